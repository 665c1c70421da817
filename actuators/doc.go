// Package actuators holds the data-path primitives a Spillway policy acts
// through: a token bucket (TokenBucket), an in-flight limit
// (ConcurrencyLimiter), and the flux-meter recorder (Recorder) that counts
// arrivals, decisions, outcomes and latency per tick.
//
// Everything on the request path (TokenBucket.Allow and Admit,
// ConcurrencyLimiter Acquire and Release, Recorder.Arrive and Done,
// Histogram.Record, Counter.Add) is lock-free and allocation-free, and the
// counters many cores write at once are sharded per processor so that they
// do not contend. None of it reads a clock: time enters as
// int64 monotonic nanoseconds supplied by the caller, so tests drive time by
// hand and the simulator can run the same code in virtual time.
//
// NaN is how Spillway represents an invalid signal. An actuator given a NaN
// setpoint passes traffic through (fail-open), and a Window reports NaN for a
// quantity it cannot measure, such as the mean latency of a tick in which no
// request completed.
package actuators
