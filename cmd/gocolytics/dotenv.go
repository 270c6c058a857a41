package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// readDotenv reads a .env file the way python-dotenv's dotenv_values does,
// which is what Pycolytics (through pydantic) read its settings with:
//
//   - lines are KEY=value, optionally "export KEY=value"; # starts a comment
//     line, and in an unquoted value " #" starts a trailing comment;
//   - 'single' and "double" quoted values may span lines; inside double
//     quotes \n, \t, \", \\ and the other C escapes are decoded, inside
//     single quotes only \' and \\;
//   - ${NAME} and ${NAME:-default} are replaced, in every value, by the
//     value NAME took earlier in the file, else by the environment
//     (lookupEnv), else by the default, else by nothing. A "$" not followed
//     by "{" is kept as it is: "x$abc" stays "x$abc". (godotenv, used
//     before, also expanded $NAME, which turned keys holding a "$" into
//     other keys.)
//
// A line that is not a setting is an error naming the line.
func readDotenv(path string, lookupEnv func(string) (string, bool)) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseDotenv(string(b), lookupEnv)
}

var (
	dotenvKey      = regexp.MustCompile(`^(?:export[ \t]+)?('[^']*'|[^=#\s]+)[ \t]*`)
	dotenvVariable = regexp.MustCompile(`\$\{([^}:]*)(?::-([^}]*))?\}`)
	dotenvEscapes  = strings.NewReplacer(`\\`, `\`, `\'`, `'`, `\"`, `"`, `\a`, "\a", `\b`, "\b",
		`\f`, "\f", `\n`, "\n", `\r`, "\r", `\t`, "\t", `\v`, "\v")
	dotenvSingleEscapes = strings.NewReplacer(`\\`, `\`, `\'`, `'`)
)

func parseDotenv(text string, lookupEnv func(string) (string, bool)) (map[string]string, error) {
	out := map[string]string{}
	for rest := text; rest != ""; {
		rest = strings.TrimLeft(rest, " \t\r\n")
		line := 1 + strings.Count(text[:len(text)-len(rest)], "\n")
		if rest == "" {
			break
		}
		if rest[0] == '#' {
			rest = skipLine(rest)
			continue
		}
		m := dotenvKey.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("line %d: not a KEY=value setting", line)
		}
		key := strings.Trim(m[1], "'")
		rest = rest[len(m[0]):]
		if rest == "" || rest[0] != '=' {
			// A bare KEY: python-dotenv gives it no value; skip it.
			rest = skipLine(rest)
			continue
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		var value string
		switch {
		case rest != "" && (rest[0] == '\'' || rest[0] == '"'):
			q := rest[0]
			end := closingQuote(rest, q)
			if end < 0 {
				return nil, fmt.Errorf("line %d: %s: the quoted value never ends", line, key)
			}
			raw := rest[1:end]
			if q == '"' {
				value = dotenvEscapes.Replace(raw)
			} else {
				value = dotenvSingleEscapes.Replace(raw)
			}
			after := lineOf(rest[end+1:])
			if t := strings.TrimSpace(after); t != "" && t[0] != '#' {
				return nil, fmt.Errorf("line %d: %s: text after the closing quote", line+strings.Count(raw, "\n"), key)
			}
			rest = skipLine(rest[end+1:])
		default:
			value = lineOf(rest)
			if i := commentStart(value); i >= 0 {
				value = value[:i]
			}
			value = strings.TrimRight(value, " \t\r")
			rest = skipLine(rest)
		}
		out[key] = expandDotenv(value, out, lookupEnv)
	}
	return out, nil
}

// expandDotenv replaces ${NAME} and ${NAME:-default} in v.
func expandDotenv(v string, earlier map[string]string, lookupEnv func(string) (string, bool)) string {
	return dotenvVariable.ReplaceAllStringFunc(v, func(ref string) string {
		m := dotenvVariable.FindStringSubmatch(ref)
		if x, ok := earlier[m[1]]; ok {
			return x
		}
		if x, ok := lookupEnv(m[1]); ok {
			return x
		}
		return m[2]
	})
}

// closingQuote is the index of the quote q that ends the value opening at
// s[0], skipping backslash-escaped ones; -1 if there is none.
func closingQuote(s string, q byte) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case q:
			return i
		}
	}
	return -1
}

// commentStart is where a trailing comment (white space, then #) of an
// unquoted value starts, or -1.
func commentStart(v string) int {
	for i := 1; i < len(v); i++ {
		if v[i] == '#' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return i - 1
		}
	}
	return -1
}

func lineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func skipLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return ""
}
