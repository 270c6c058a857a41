package main

import (
	"io"
	"maps"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestParseDotenv follows python-dotenv's dotenv_values: ${NAME} is
// expanded, a bare $ is kept.
func TestParseDotenv(t *testing.T) {
	env := mapEnv(map[string]string{"HOME": "/home/g", "ABC": "from-env"})
	cases := []struct {
		name, text string
		want       map[string]string
	}{
		{"bare dollar in single quotes", `API_KEYS='["x$abc","k$ABC"]'`, map[string]string{"API_KEYS": `["x$abc","k$ABC"]`}},
		{"bare dollar in double quotes", `K="a$ABC$"`, map[string]string{"K": "a$ABC$"}},
		{"bare dollar unquoted", `K=a$ABC`, map[string]string{"K": "a$ABC"}},
		{"braces from the environment", `K="${HOME}/x"`, map[string]string{"K": "/home/g/x"}},
		{"braces from earlier in the file", "A=1\nK='${A}${ABC}'", map[string]string{"A": "1", "K": "1from-env"}},
		{"file before environment", "ABC=file\nK=${ABC}", map[string]string{"ABC": "file", "K": "file"}},
		{"default", `K=${NOPE:-dflt}${NOPE}`, map[string]string{"K": "dflt"}},
		{"comments and export", "# c\nexport A = 'x' # c\nB=y # c\nC=z#not", map[string]string{"A": "x", "B": "y", "C": "z#not"}},
		{"escapes", `A="l1\nl2\"q\\" ` + "\nB='it\\'s \\n'", map[string]string{"A": "l1\nl2\"q\\", "B": `it's \n`}},
		{"multi-line", "A=\"1\n2\"\nB=3", map[string]string{"A": "1\n2", "B": "3"}},
		{"bare key skipped", "A\nB=2", map[string]string{"B": "2"}},
		{"empty", "A=\nB=''", map[string]string{"A": "", "B": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDotenv(tc.text, env)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseDotenv_Errors(t *testing.T) {
	for _, text := range []string{"A='open", "A=1\nB=\"x\" y", "=1"} {
		if got, err := parseDotenv(text, mapEnv(nil)); err == nil {
			t.Errorf("%q: got %q, want an error", text, got)
		}
	}
	_, err := parseDotenv("A=1\n\nB=\"x\" y", mapEnv(nil))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("got %v, want an error naming line 3", err)
	}
}

// TestLoadConfig_KeyWithDollar: a key holding "$" reaches the key list as
// written (godotenv turned "k$EY" into "k").
func TestLoadConfig_KeyWithDollar(t *testing.T) {
	f := gctest.EnvFile(t, `API_KEYS="[\"k$EY\", \"p$ABC\"]"`+"\n")
	c, err := LoadConfig([]string{"--env-file", f}, mapEnv(map[string]string{"EY": "other"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.APIKeys) != 2 || c.APIKeys[0] != "k$EY" || c.APIKeys[1] != "p$ABC" {
		t.Errorf("got keys %q, want [k$EY p$ABC]", c.APIKeys)
	}
}
