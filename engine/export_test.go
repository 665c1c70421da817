package engine

// AwaitingTick and TickWall expose the tick loop's steps to the tests,
// which drive them on a virtual clock.
type AwaitingTick = awaitingTick

func (e *Engine) TickWall(w []AwaitingTick) []AwaitingTick { return e.tickWall(w) }
