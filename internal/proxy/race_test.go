//go:build race

package proxy_test

// raceEnabled slows the overload test's load down, since the race
// detector makes each request several times costlier.
const raceEnabled = true
