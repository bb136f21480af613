package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/stenographer-ng/stenographer/stenographer/fleet"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/auth"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/config"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
)

// checkConfig loads the config and every file it names as a start does
// (sensor certificates, password file, the analysts' TLS files, the spool
// directory), without listening or writing anything.
func checkConfig(path string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "stenofleet: %v\n", err)
		return 1
	}
	cfg, err := config.Load(path)
	if err != nil {
		return fail(err)
	}
	f, err := fleet.New(cfg, fleet.Options{})
	if err != nil {
		return fail(fmt.Errorf("%s: stenographer_instances: %w", path, err))
	}
	if _, err := fleet.NewServer(cfg, f, nil); err != nil {
		return fail(fmt.Errorf("%s: %w", path, err))
	}
	if _, err := tlsconfig.Server(cfg.ClientCA, cfg.TLSCert, cfg.TLSKey); err != nil {
		return fail(fmt.Errorf("%s: CLIENT_CA/TLS_CERT/TLS_KEY: %w", path, err))
	}
	if cfg.SpoolDir != "" {
		if err := checkSpool(cfg.SpoolDir); err != nil {
			return fail(fmt.Errorf("%s: SPOOL_DIR: %w", path, err))
		}
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "stenofleet: %s: warning: %s\n", path, w)
	}
	fmt.Fprintf(stdout, "%s: good: %d sensors, listening on %s\n", path, len(cfg.Sensors), cfg.Listen)
	return 0
}

// checkSpool accepts a writable directory, or a missing one whose nearest
// existing parent is a writable directory (the start creates it).
func checkSpool(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if errors.Is(err, os.ErrNotExist) && d != filepath.Dir(d) {
			continue
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", d)
		}
		if err := unix.Access(d, unix.W_OK); err != nil {
			return fmt.Errorf("%s: not writable: %w", d, err)
		}
		return nil
	}
}

// hashPassword prints "NAME:HASH" for the first line of stdin. On a
// terminal it prompts on stderr, turns echo off and asks twice.
func hashPassword(name string, stdin *os.File, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "stenofleet: --hash-password: %v\n", err)
		return 1
	}
	if name == "" {
		u, err := user.Current()
		if err != nil {
			return fail(fmt.Errorf("no --user and the current user is unknown: %w", err))
		}
		name = u.Username
	}
	if err := checkUserName(name); err != nil {
		return fail(err)
	}
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		return fail(err)
	}
	h, err := auth.HashPassword(pw)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s:%s\n", name, h)
	return 0
}

// checkUserName refuses what would break the "user:hash" line.
func checkUserName(name string) error {
	if name == "" {
		return errors.New("empty user name")
	}
	if strings.ContainsRune(name, ':') || strings.ContainsFunc(name, unicode.IsSpace) {
		return fmt.Errorf("user name %q: no ':' or whitespace allowed", name)
	}
	return nil
}

func readPassword(stdin *os.File, stderr io.Writer) (string, error) {
	fd := int(stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil { // not a terminal: a pipe or a file
		return readLine(bufio.NewReader(stdin))
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("turning terminal echo off: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	r := bufio.NewReader(stdin)
	fmt.Fprint(stderr, "Password: ")
	pw, err := readLine(r)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Password again: ")
	again, err := readLine(r)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the passwords differ")
	}
	return pw, nil
}

// readLine returns the first line without its line ending; an empty one is
// refused.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password refused")
	}
	return line, nil
}
