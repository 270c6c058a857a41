package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Defaults of getting data out.
const (
	DefaultBackupInterval = 24 * time.Hour
	DefaultBackupKeep     = 7
)

// DataOutConfig are the settings of the admin key, retention, erasure and
// backups.
type DataOutConfig struct {
	// AdminKeys may read and manage data; empty means the generated key.
	AdminKeys      []string
	RetentionDays  int
	EraseEventType string
	BackupDir      string
	BackupInterval time.Duration
	BackupKeep     int
}

// parseAdminKeys reads ADMIN_KEYS: a JSON list of non-empty strings, or
// empty for the generated key.
func parseAdminKeys(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	var keys []string
	if err := json.Unmarshal([]byte(v), &keys); err != nil {
		return nil, fmt.Errorf("not a JSON list of strings: %v", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("the list is empty; leave ADMIN_KEYS unset for a generated key")
	}
	for i, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("key %d is empty", i)
		}
	}
	return keys, nil
}
