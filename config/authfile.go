package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
)

// Credentials is the set of proxy users read from a --proxy-auth-file. Passwords are kept only
// as SHA-256 digests, compared in constant time. A nil *Credentials accepts nobody.
type Credentials struct {
	users map[string][sha256.Size]byte
}

// maxAuthField is the RFC 1929 limit on a username or password (one length byte, at least 1).
const maxAuthField = 255

// LoadAuthFile reads a file of `user:password` lines. Blank lines and lines starting with '#'
// are ignored; a trailing CR is dropped; the password is everything after the first ':' (it may
// contain ':' and spaces). User and password must each be 1..255 bytes (RFC 1929). Any other line,
// a user given twice, or a file without users is an error naming the file and line; errors never
// quote the password.
func LoadAuthFile(path string) (*Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: proxy auth file: %w", err)
	}
	c := &Credentials{users: make(map[string][sha256.Size]byte)}
	for i, line := range bytes.Split(data, []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 || line[0] == '#' {
			continue
		}
		user, pass, err := splitAuthLine(line)
		if err == nil {
			if _, dup := c.users[user]; dup {
				err = errors.New("user given twice")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("config: %s line %d: %w", path, i+1, err)
		}
		c.users[user] = sha256.Sum256(pass)
	}
	if len(c.users) == 0 {
		return nil, fmt.Errorf("config: %s: no user:password lines", path)
	}
	return c, nil
}

func splitAuthLine(line []byte) (string, []byte, error) {
	user, pass, ok := bytes.Cut(line, []byte{':'})
	switch {
	case !ok:
		return "", nil, errors.New("want user:password")
	case len(user) == 0 || len(user) > maxAuthField:
		return "", nil, fmt.Errorf("user must be 1..%d bytes", maxAuthField)
	case len(pass) == 0 || len(pass) > maxAuthField:
		return "", nil, fmt.Errorf("password must be 1..%d bytes", maxAuthField)
	}
	return string(user), pass, nil
}

// Len returns the number of users.
func (c *Credentials) Len() int {
	if c == nil {
		return 0
	}
	return len(c.users)
}

// Check reports whether user and pass match an entry. The password comparison takes the same
// time whatever the password, and whether or not the user exists.
func (c *Credentials) Check(user, pass string) bool {
	if c == nil {
		return false
	}
	want, known := c.users[user]
	got := sha256.Sum256([]byte(pass))
	eq := subtle.ConstantTimeCompare(want[:], got[:]) == 1
	return known && eq
}
