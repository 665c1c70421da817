// Package splitlisten serves gRPC and HTTP/1 on one port: it sorts the
// connections of a listener by their first bytes, the HTTP/2 client
// preface (gRPC, or any prior-knowledge h2c client) or anything else.
package splitlisten

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"time"
)

// preface is what every HTTP/2 connection starts with (RFC 9113 §3.4).
var preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// SniffTimeout is how long a connection may take to send enough bytes to
// be sorted; one that does not is closed.
const SniffTimeout = 10 * time.Second

// Split returns two listeners fed by ln's connections: h2 gets those that
// open with the HTTP/2 preface, other the rest. Closing either closes ln.
// Sorting happens in a goroutine per connection, so a slow client delays
// only itself.
func Split(ln net.Listener) (h2, other net.Listener) {
	s := &splitter{ln: ln, closed: make(chan struct{})}
	a := &sub{s: s, conns: make(chan net.Conn)}
	b := &sub{s: s, conns: make(chan net.Conn)}
	go s.run(a, b)
	return a, b
}

type splitter struct {
	ln        net.Listener
	closeOnce sync.Once
	closed    chan struct{}
	err       error // what Accept returns once closed; set before closed is closed
}

func (s *splitter) run(h2, other *sub) {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			s.closeWith(err)
			return
		}
		go func() {
			c, isH2, ok := sniff(conn)
			if !ok {
				conn.Close()
				return
			}
			to := other
			if isH2 {
				to = h2
			}
			select {
			case to.conns <- c:
			case <-s.closed:
				conn.Close()
			}
		}()
	}
}

// closeWith closes ln and both sides; their Accept then returns acceptErr,
// or net.ErrClosed when it is nil. Only the first call counts.
func (s *splitter) closeWith(acceptErr error) error {
	var err error
	s.closeOnce.Do(func() {
		s.err = acceptErr
		err = s.ln.Close()
		close(s.closed)
	})
	return err
}

// sniff reads as much of conn as it takes to tell an HTTP/2 preface from
// anything else, and returns conn with those bytes still to be read.
func sniff(conn net.Conn) (net.Conn, bool, bool) {
	conn.SetReadDeadline(time.Now().Add(SniffTimeout))
	br := bufio.NewReaderSize(conn, 64)
	isH2 := true
	for n := 1; n <= len(preface); n++ {
		b, err := br.Peek(n)
		if err != nil {
			// A connection that closed or stalled before it could be sorted.
			return nil, false, false
		}
		if !bytes.Equal(b, preface[:n]) {
			isH2 = false
			break
		}
	}
	conn.SetReadDeadline(time.Time{})
	return &peekedConn{Conn: conn, r: br}, isH2, true
}

// peekedConn reads the sniffed bytes first.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	return c.Conn.Read(p)
}

// sub is one side of a split.
type sub struct {
	s     *splitter
	conns chan net.Conn
}

func (l *sub) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.s.closed:
		if l.s.err != nil {
			return nil, l.s.err
		}
		return nil, net.ErrClosed
	}
}

func (l *sub) Close() error   { return l.s.closeWith(nil) }
func (l *sub) Addr() net.Addr { return l.s.ln.Addr() }
