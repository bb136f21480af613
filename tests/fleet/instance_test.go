// stenofleet instances: their config files and processes. The main one
// listens on fleetAddr; tests that need a spool of their own (restart,
// expiry) start more on 127.0.0.1:9444.. in the same namespace.

package fleet_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/fleet/auth"
	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// fleetCerts are the files every instance shares: its server
// certificate, the analysts' CA, a client certificate the sensors do not
// trust, and the password file.
type fleetCerts struct {
	analysts        *ca
	srvCert, srvKey string
	badCert, badKey string
	pwFile          string
}

func (e *fleetEnv) fleetCerts() *fleetCerts {
	t := e.t
	if e.certs != nil {
		return e.certs
	}
	c := &fleetCerts{analysts: newCA(t, e.dir, "analysts")}
	c.srvCert, c.srvKey = c.analysts.issue("stenofleet", true)
	aliceCert, aliceKey := c.analysts.issue("alice", false)
	rogue := newCA(t, e.dir, "rogue")
	c.badCert, c.badKey = rogue.issue("stenofleet-client", false)
	c.pwFile = filepath.Join(e.dir, "passwords")
	var pw strings.Builder
	for _, u := range []string{"alice", "bob"} {
		h, err := auth.HashPassword(u + "-secret")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&pw, "%s:%s\n", u, h)
	}
	if err := os.WriteFile(c.pwFile, []byte(pw.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := caPool(c.analysts.File)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(aliceCert, aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	e.client = e.httpClient(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{kp}})
	e.certs = c
	return c
}

// fleetOpts are what one instance's config varies in; zero values are
// the main instance's.
type fleetOpts struct {
	listen        string // LISTEN, default fleetAddr
	spool         string // SPOOL_DIR, default <dir>/spool
	expireTime    string // EXPIRE_TIME, default 3600 (seconds)
	sensorTimeout string // SENSOR_TIMEOUT, default 60s
	extra         string // more keys, whole YAML lines (MAX_JOBS, EXPIRE_SPACE, CLEANUP_TIME)
}

// writeConfig writes an instance's config file, name, in the test's
// directory: the three sensors tagged, plus one with a client
// certificate the sensors do not trust.
func (e *fleetEnv) writeConfig(name string, o fleetOpts) string {
	t := e.t
	c := e.fleetCerts()
	if o.listen == "" {
		o.listen = fleetAddr
	}
	if o.spool == "" {
		o.spool = filepath.Join(e.dir, "spool")
	}
	if o.expireTime == "" {
		o.expireTime = "3600"
	}
	if o.sensorTimeout == "" {
		o.sensorTimeout = "60s"
	}
	var b strings.Builder
	b.WriteString("stenographer_instances:\n")
	tags := []string{"[dmz, good]", "[core, good]", "[core, good]"}
	for i, s := range e.sensors {
		cd := s.d.CertDir
		fmt.Fprintf(&b, "  - { host: 10.77.%d.2, sensor: %s, port: %d, key: %s, cert: %s, ca: %s, server_name: 127.0.0.1, tags: %s }\n",
			i, s.name, daemon.HTTPSPort, filepath.Join(cd, "client_key.pem"), filepath.Join(cd, "client_cert.pem"),
			filepath.Join(cd, "ca_cert.pem"), tags[i])
	}
	cd := e.sensors[0].d.CertDir
	fmt.Fprintf(&b, "  - { host: 10.77.0.2, sensor: sensor-badcert, port: %d, key: %s, cert: %s, ca: %s, server_name: 127.0.0.1, tags: [bad] }\n",
		daemon.HTTPSPort, c.badKey, c.badCert, filepath.Join(cd, "ca_cert.pem"))
	fmt.Fprintf(&b, "SPOOL_DIR: %s\nEXPIRE_TIME: %s\nLISTEN: %s\nTLS_CERT: %s\nTLS_KEY: %s\nCLIENT_CA: %s\nSENSOR_TIMEOUT: %s\nPASSWORD_FILE: %s\nHEALTH_INTERVAL: 1s\n",
		o.spool, o.expireTime, o.listen, c.srvCert, c.srvKey, c.analysts.File, o.sensorTimeout, c.pwFile)
	b.WriteString(o.extra)
	cfg := filepath.Join(e.dir, name)
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fleetProc is a running stenofleet.
type fleetProc struct {
	e    *fleetEnv
	t    *testing.T
	cfg  string
	addr string
	log  *testenv.SyncBuffer
	cmd  *exec.Cmd
	done chan struct{}
}

// startInstance starts stenofleet on cfg in the fleet namespace and waits
// until it answers on addr; it is stopped when t ends.
func (e *fleetEnv) startInstance(t *testing.T, cfg, addr string, log *testenv.SyncBuffer) *fleetProc {
	if log == nil {
		log = &testenv.SyncBuffer{}
	}
	p := &fleetProc{e: e, t: t, cfg: cfg, addr: addr, log: log}
	p.start()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("stenofleet %s log:\n%s", addr, testenv.Tail(p.log.Bytes(), 6000))
		}
	})
	return p
}

func (p *fleetProc) start() {
	t := p.t
	p.cmd = netns.Command(p.e.ns, testenv.Binary(t, "stenofleet"), "--config="+p.cfg)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { p.cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := p.e.client.Get("https://" + p.addr + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("stenofleet %s exited: %s", p.addr, p.log.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stenofleet %s does not answer: %v\n%s", p.addr, err, p.log.Bytes())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends sig to the instance's process group and waits for it to
// exit (SIGKILL after 30s); it does nothing once stopped.
func (p *fleetProc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("stenofleet %s did not exit within 30s of %v", p.addr, sig)
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// restart starts the instance again on the same config (and spool).
func (p *fleetProc) restart() { p.start() }

// exitCode is the instance's exit status once it has stopped.
func (p *fleetProc) exitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}
