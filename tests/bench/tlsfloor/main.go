// Command tlsfloor is the daemon benchmark's yardstick for HTTPS: a server
// with stenographer's TLS stack (the same certificates and client
// verification, the gathering of TLS records, HTTP/1.1 with a chunked
// body, 256 KiB pieces each flushed) that answers POST /query with as
// many bytes as the body names, from memory, doing no query at all. Its
// time through curl is the least any HTTPS answer of that size can take
// on the machine: what the transport and the client cost.
//
//	tlsfloor --certs DIR --addr 127.0.0.1:1240
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stenographer-ng/stenographer/stenographer/coalesce"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
)

// piece is the size of the daemon's result pieces (server.resultPiece).
const piece = 256 << 10

func main() {
	certs := flag.String("certs", "", "directory of ca_cert.pem, server_cert.pem, server_key.pem")
	addr := flag.String("addr", "127.0.0.1:1240", "address to listen on")
	flag.Parse()
	tc, err := tlsconfig.Server(filepath.Join(*certs, "ca_cert.pem"), filepath.Join(*certs, "server_cert.pem"),
		filepath.Join(*certs, "server_key.pem"))
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	hs := &http.Server{
		Handler:   http.HandlerFunc(answer),
		TLSConfig: tc,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return coalesce.NewContext(ctx, coalesce.Find(c))
		},
		Protocols: &protocols,
	}
	fmt.Println("listening on", ln.Addr())
	log.Fatal(hs.ServeTLS(coalesce.Listener(ln), "", ""))
}

// answer writes the number of bytes the request's body names (zeros: the
// cost of encrypting and sending does not depend on the content).
func answer(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 32))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "the body is the number of bytes to send", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	rc := http.NewResponseController(w)
	conn := coalesce.FromContext(r.Context())
	buf := make([]byte, piece)
	for n > 0 {
		b := buf[:min(n, piece)]
		if err := conn.Do(func() error {
			if _, err := w.Write(b); err != nil {
				return err
			}
			return rc.Flush()
		}); err != nil {
			return // the client is gone
		}
		n -= int64(len(b))
	}
}
