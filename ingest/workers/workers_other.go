//go:build !linux

package workers

import (
	"errors"
	"os"
	"syscall"
)

var errNotLinux = errors.New("worker processes need Linux (WORKERS=1 runs everywhere)")

func workerProcAttr() *syscall.SysProcAttr { return nil }

func reusePort(network, address string, c syscall.RawConn) error { return errNotLinux }

// ReservePort is Linux-only.
func ReservePort(host string, port int) (*os.File, string, error) { return nil, "", errNotLinux }
