package forward

import (
	"errors"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

var passwordKV = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// secrets returns the forms in which the connection string's password
// could appear in an error: as given, URL-decoded, unquoted.
func secrets(connString string) []string {
	var out []string
	if c, err := pgconn.ParseConfig(connString); err == nil && c.Password != "" {
		out = append(out, c.Password)
	}
	if u, err := url.Parse(connString); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p)
		}
		if i := strings.Index(connString, "://"); i >= 0 {
			if at := strings.LastIndex(connString, "@"); at > i {
				if c := strings.Index(connString[i+3:at], ":"); c >= 0 {
					out = append(out, connString[i+3+c+1:at])
				}
			}
		}
	}
	for _, m := range passwordKV.FindAllStringSubmatch(connString, -1) {
		out = append(out, m[1], strings.Trim(m[1], "'"))
	}
	return out
}

// redacted is an error whose text has the password removed; it still
// unwraps to the original, so errors.Is works.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// redact returns err with every form of the connection string's password
// replaced by xxxxx, so that it can be logged or shown.
func redact(err error, connString string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets(connString) {
		if len(s) >= 1 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	var r *redacted
	if errors.As(err, &r) && r.msg == msg {
		return err
	}
	return &redacted{msg: msg, err: err}
}
