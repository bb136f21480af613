package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/rpc"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
)

// build compiles this command into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "stenogrpc")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestCommand runs stenogrpc as a process against a real gRPC server.
func TestCommand(t *testing.T) {
	bin := build(t)
	st := servertest.Store(t, servertest.Layout{Packets: 1000, PerFile: 100, Step: 100 * time.Millisecond})
	certs := servertest.Certs(t)
	srv, err := rpc.New(rpc.Config{Addr: "127.0.0.1:0", CaCert: certs.CA, ServerCert: certs.Server.Cert, ServerKey: certs.Server.Key,
		Store: st, ClientPcapChunkSize: 1000, ClientPcapMaxSize: 1 << 20, ServerPcapMaxSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	<-srv.Ready()
	addr := srv.Addr().String()
	tlsArgs := func(ca, cert, key string) []string {
		return []string{"--server", addr, "--ca", ca, "--cert", cert, "--key", key}
	}
	good := tlsArgs(certs.CA, certs.Client.Cert, certs.Client.Key)
	all, _ := servertest.Expected(t, st, "port 1003 or port 1004", pcap.Limits{})
	cut, _ := servertest.Expected(t, st, "port 1003 or port 1004", pcap.Limits{MaxBytes: 1500})

	for _, tc := range []struct {
		name   string
		args   []string
		file   bool   // --out to a file rather than stdout
		code   int    // exit status
		want   []byte // output, when code is 0
		stderr string // in stderr
	}{
		{"to a file", with(good, "port", "1003", "or", "port", "1004"), true, 0, all, ""},
		{"to stdout", with(good, "--chunk_size", "333", "port 1003 or port 1004"), false, 0, all, ""},
		{"truncated", with(good, "--max_size", "1500", "--uid", "abc", "port 1003 or port 1004"), true, 0, cut, "truncated"},
		{"bad query", with(good, "port 1003 or"), true, 1, nil, "InvalidArgument"},
		{"negative chunk", with(good, "--chunk_size", "-4", "port 1"), false, 1, nil, "chunk_size"},
		{"another CA's client certificate", with(tlsArgs(certs.CA, certs.OtherCAClient.Cert, certs.OtherCAClient.Key), "port 1"), true, 1, nil, "Unavailable"},
		{"missing key file", with(tlsArgs(certs.CA, certs.Client.Cert, "/nonexistent/key.pem"), "port 1"), false, 1, nil, "/nonexistent/key.pem"},
		{"no query", good, false, 2, nil, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "result.pcap")
			args := tc.args
			if tc.file {
				args = append([]string{"--out", out}, args...)
			}
			cmd := exec.Command(bin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tc.code, tc.stderr)
			}
			got := stdout.Bytes()
			if tc.file {
				got, err = os.ReadFile(out)
				if tc.code != 0 {
					if err == nil {
						t.Error("a failed retrieval left an output file")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if stdout.Len() != 0 {
					t.Errorf("%d bytes on stdout with --out", stdout.Len())
				}
			}
			if tc.code == 0 && !bytes.Equal(got, tc.want) {
				t.Errorf("saved %d bytes; want the store's %d byte answer", len(got), len(tc.want))
			}
			if tc.code == 0 && tc.stderr == "" && stderr.Len() != 0 {
				t.Errorf("unexpected stderr %q", stderr.String())
			}
		})
	}
	// A target that is not a regular file is written, not replaced: a
	// rename over /dev/null would put a file in the device's place.
	t.Run("to a FIFO", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "result.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		// Read and write ends at once: the open never blocks, so the test
		// ends even when the command never opens the FIFO. Reading stops
		// at the first pause after the command has exited.
		f, err := os.OpenFile(fifo, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var exited atomic.Bool
		read := make(chan []byte, 1)
		go func() {
			var got []byte
			b := make([]byte, 64<<10)
			for {
				f.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				n, err := f.Read(b)
				got = append(got, b[:n]...)
				if err != nil && (!os.IsTimeout(err) || exited.Load()) {
					break
				}
			}
			read <- got
		}()
		out, err := exec.Command(bin, with(good, "--out", fifo, "port 1003 or port 1004")...).CombinedOutput()
		exited.Store(true)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got := <-read; !bytes.Equal(got, all) {
			t.Errorf("read %d bytes from the FIFO; want the store's %d byte answer", len(got), len(all))
		}
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("after the retrieval the FIFO is %v (%v); want it left a FIFO", fi.Mode(), err)
		}
	})
}

// with returns a fresh slice of base followed by extra.
func with(base []string, extra ...string) []string {
	return append(append([]string(nil), base...), extra...)
}

type captureDown time.Time

func (c captureDown) CaptureState() (bool, time.Time) { return false, time.Time(c) }

// TestWarnings: with a spoiled index file and capture down, stenogrpc
// writes the rest of the result, says both on stderr and exits 1.
func TestWarnings(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	st := servertest.StoreIn(t, dir, servertest.Layout{Packets: 1000, PerFile: 100, Step: 100 * time.Millisecond})
	bad := st.Files(0)[1]
	if err := os.WriteFile(filepath.Join(dir, "IDX0", bad.Name), bytes.Repeat([]byte{0xee}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	certs := servertest.Certs(t)
	srv, err := rpc.New(rpc.Config{Addr: "127.0.0.1:0", CaCert: certs.CA, ServerCert: certs.Server.Cert, ServerKey: certs.Server.Key,
		Store: st, Capture: captureDown(time.Now().Add(-time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	servertest.Serve(t, srv)
	out := filepath.Join(t.TempDir(), "out.pcap")
	cmd := exec.Command(bin, "--server", srv.Addr().String(), "--ca", certs.CA, "--cert", certs.Client.Cert, "--key", certs.Client.Key,
		"--out", out, "after 3h ago")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want 1; stderr %s", err, stderr.String())
	}
	for _, want := range []string{"warning: capture is down since ", "1 file(s) could not be read", bad.Name} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(servertest.Packets(t, data)); n != 950 {
		t.Errorf("%d packets written, want the 950 of the readable files", n)
	}
}
