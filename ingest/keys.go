package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
)

// DevKey is the key Pycolytics ships in its example .env, accepted when no
// keys are configured.
const DevKey = "I-am-an-unsecure-dev-key-REPLACE_ME"

// Keys is a set of API keys. A key is checked against every configured key
// in constant time; comparing SHA-256 sums rather than the keys themselves
// keeps the time independent of the keys' lengths as well.
type Keys struct {
	sums [][sha256.Size]byte
}

// NewKeys returns the set of the given keys.
func NewKeys(keys []string) *Keys {
	k := &Keys{sums: make([][sha256.Size]byte, len(keys))}
	for i, key := range keys {
		k.sums[i] = sha256.Sum256([]byte(key))
	}
	return k
}

// Valid reports whether key is one of the set. A nil key (none sent) is
// never valid.
func (k *Keys) Valid(key []byte) bool {
	if key == nil {
		return false
	}
	sum := sha256.Sum256(key)
	ok := 0
	for i := range k.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], k.sums[i][:])
	}
	return ok == 1
}

// Len returns the number of keys.
func (k *Keys) Len() int { return len(k.sums) }
