package admin

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// KeyFileSuffix follows the database's path to name the file of the
// generated admin key: databases/database.db.admin-key.
const KeyFileSuffix = ".admin-key"

// KeyFile is the path of the generated admin key of the database at dbPath.
func KeyFile(dbPath string) string { return dbPath + KeyFileSuffix }

// LoadOrCreateKey returns the admin key kept beside the database at dbPath,
// making one (256 random bits) when there is none yet. The file is written
// with mode 0600 and synced before it is used; a file found with looser
// permissions is tightened to 0600. created says the key is new.
func LoadOrCreateKey(dbPath string) (key string, created bool, err error) {
	path := KeyFile(dbPath)
	for range 2 {
		key, err = readKey(path)
		if err == nil {
			return key, false, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", false, err
		}
		key, err = writeKey(path)
		if err == nil {
			return key, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", false, err
		}
		// Another process made it first: read theirs.
	}
	return "", false, fmt.Errorf("admin key file %s: %w", path, err)
}

func readKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("admin key file %s is empty: delete it to have a new key made", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("admin key file %s is readable by others and cannot be made private: %w", path, err)
		}
	}
	return key, nil
}

func writeKey(path string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	key := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("admin key file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(key + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("admin key file %s: %w", path, err)
	}
	return key, nil
}

// DashboardURL is the address of the dashboard on addr with key in the URL
// fragment, which browsers never send to a server (nor in a Referer): the
// page reads it from there. An unspecified address (0.0.0.0, ::) is
// written as 127.0.0.1.
func DashboardURL(addr net.Addr, https bool, key string) string {
	host := addr.String()
	if ap, err := netip.ParseAddrPort(host); err == nil {
		a := ap.Addr()
		if a.IsUnspecified() {
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		host = netip.AddrPortFrom(a.Unmap(), ap.Port()).String()
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + host + "/dashboard#key=" + key
}
