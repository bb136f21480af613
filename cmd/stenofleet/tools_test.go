package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckUserName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"alice", true}, {"alice.smith@example", true}, {"", false},
		{"a:b", false}, {"a b", false}, {"a\tb", false}, {"a\u00a0b", false},
	} {
		if err := checkUserName(c.name); (err == nil) != c.ok {
			t.Errorf("checkUserName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestReadLine(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"pw\n", "pw", ""},
		{"pw\r\nnext\n", "pw", ""},
		{"no newline", "no newline", ""},
		{" spaced pw \n", " spaced pw ", ""},
		{"\n", "", "empty password"},
		{"", "", "empty password"},
	} {
		got, err := readLine(bufio.NewReader(strings.NewReader(c.in)))
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("readLine(%q) = %q, %v; want %q, %q", c.in, got, err, c.want, c.err)
		}
	}
}

func TestCheckSpool(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		ok   bool
	}{
		{dir, true},
		{filepath.Join(dir, "new", "spool"), true}, // created at start
		{file, false},
		{filepath.Join(file, "spool"), false},
	} {
		if err := checkSpool(c.path); (err == nil) != c.ok {
			t.Errorf("checkSpool(%s) = %v, want ok=%v", c.path, err, c.ok)
		}
	}
}
