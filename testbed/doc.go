// Package testbed models microservice apps and offers them open-loop load,
// so that Spillway's effect on goodput can be measured (DESIGN.md §8).
//
// An App is services with bounded worker pools and APIs that are call
// chains through them; Boutique and TwoTierApp are built in, and
// LoadAppFile reads one from JSON. A Scenario is Poisson load per API that
// changes in steps (steady, surge, ramp, capacity drop, flash crowd,
// priority mix). Simulate runs an App through a Scenario under a Policy
// with one of two drivers, both around the real engine, control point and
// token buckets:
//
//   - virtual: a discrete-event simulation on a virtual clock with seeded
//     RNGs, hundreds of times faster than real time and deterministic;
//   - live: real HTTP servers on loopback (StartLive), with Spillway's
//     middleware in front of the entry service.
//
// Run offers one URL open-loop load in real time; StartTwoTier is the
// demo's two-tier app live. docs/simulator.md describes the model, the
// metrics and how policies are instantiated per API.
package testbed
