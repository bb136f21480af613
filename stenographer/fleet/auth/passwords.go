package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// ErrBadPasswordFile is returned (wrapped, with the file and line) for a
// password file Auth will not use.
var ErrBadPasswordFile = errors.New("auth: bad password file")

// HashPassword returns a password file hash for pw, for a future
// `stenofleet --hash-password`. bcrypt reads at most 72 bytes, so a longer
// password is refused rather than silently truncated.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("auth: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("auth: hashing password: %w", err)
	}
	return string(h), nil
}

// loadPasswords reads a password file: "user:bcrypt-hash" lines, '#'
// comments, blank lines. A file others can write is refused, since whoever
// can write it can log in as anyone.
func loadPasswords(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: opening password file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: stat %s: %w", path, err)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s is group- or world-writable (mode %04o); chmod go-w it",
			ErrBadPasswordFile, path, st.Mode().Perm())
	}
	users := make(map[string][]byte)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrBadPasswordFile, path, n, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%w: %s line %d: user %q listed twice", ErrBadPasswordFile, path, n, user)
		}
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: reading %s: %w", path, err)
	}
	return users, nil
}

func parseLine(line string) (string, []byte, error) {
	user, hash, ok := strings.Cut(line, ":")
	if !ok {
		return "", nil, errors.New(`want "user:hash"`)
	}
	if user == "" || strings.ContainsAny(user, " \t") {
		return "", nil, fmt.Errorf("bad user name %q", user)
	}
	h := []byte(hash)
	if !bytes.HasPrefix(h, []byte("$2a$")) && !bytes.HasPrefix(h, []byte("$2b$")) && !bytes.HasPrefix(h, []byte("$2y$")) {
		return "", nil, fmt.Errorf("user %q: hash is not bcrypt ($2a$, $2b$ or $2y$); make one with `htpasswd -B -n %s`", user, user)
	}
	if _, err := bcrypt.Cost(h); err != nil {
		return "", nil, fmt.Errorf("user %q: malformed bcrypt hash: %v", user, err)
	}
	return user, h, nil
}
