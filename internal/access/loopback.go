// Package access decides who may reach Spillway's HTTP listeners (the admin
// API and the RL bridge): a listener binds loopback, or it requires a bearer
// token.
package access

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// IsLoopback reports whether the listen address addr ("host:port") binds
// only loopback: a loopback IP ("127.0.0.1:8082", "[::1]:0") or the name
// "localhost". An empty or unspecified host (":8082", "0.0.0.0:8082"), any
// other name, and an address without a port are not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	return isLoopbackName(host)
}

// IsLoopbackHost reports whether host, a request's Host header with or
// without a port, names loopback: "localhost", "127.0.0.1:9464", any of
// 127.0.0.0/8, "[::1]" or "[::1]:9464". A page on another origin that
// DNS-rebinds its own name to 127.0.0.1 still sends that name, so it fails
// this check.
func IsLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host != "" && isLoopbackName(host)
}

// isLoopbackName reports whether host, without a port or brackets, is
// "localhost" or a loopback IP.
func isLoopbackName(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true // RFC 6761 §6.3: localhost resolves to loopback only
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

// Listen listens on the TCP address addr, refusing an address beyond
// loopback when token is "": tokenFlag names the flag that sets one, for
// the error. A name such as "localhost" is checked again once resolved.
func Listen(addr, token, tokenFlag string) (net.Listener, error) {
	if token == "" && !IsLoopback(addr) {
		return nil, fmt.Errorf("refusing to listen on %s without a token: bind a loopback address such as 127.0.0.1:PORT, or set a bearer token (%s)", addr, tokenFlag)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if token == "" && !IsLoopback(ln.Addr().String()) {
		ln.Close()
		return nil, fmt.Errorf("refusing to listen on %s (%s resolved to it) without a token (%s)", ln.Addr(), addr, tokenFlag)
	}
	return ln, nil
}
