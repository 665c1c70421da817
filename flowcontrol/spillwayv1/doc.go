// Package spillwayv1 is the generated Go code of the Check API
// (proto/spillway/v1/flowcontrol.proto): the messages and the gRPC client
// and server a service in any language uses to ask a Spillway control
// point before it handles a request. Package flowcontrol serves it.
package spillwayv1
