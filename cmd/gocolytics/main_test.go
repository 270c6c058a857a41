package main

import (
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard/forward/pgtest"
)

// TestMain stops the PostgreSQL server the forwarding tests share and
// removes the binary gctest built once the tests are done.
func TestMain(m *testing.M) { gctest.Main(m, pgtest.StopShared) }
