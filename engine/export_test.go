package engine

// AwaitingTick and TickWall expose the tick loop's steps to the tests,
// which drive them on a virtual clock.
type AwaitingTick = awaitingTick

func (e *Engine) TickWall(w []AwaitingTick) []AwaitingTick { return e.tickWall(w) }

// Evaluations is how many policy files this process has evaluated.
func Evaluations() uint64 { return evaluations.Load() }
