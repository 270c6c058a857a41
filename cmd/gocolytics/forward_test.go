package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard/forward/pgtest"
)

// startNode starts the binary as one node forwarding to pgURL (given in
// the environment, as an operator should, not on the command line). It
// polls every 100 ms and merges staged rows (which the forwarder reads once
// merged) within half a second, instead of 1 s and the quiet-time 5 s.
func startNode(t *testing.T, dbPath, pgURL, nodeID string, args ...string) *gctest.Server {
	t.Helper()
	port := gctest.FreePort(t)
	args = append([]string{"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--sqlite-file-path", dbPath, "--api-keys", `["` + gctest.Key + `"]`,
		"--rate-limit", "off", "--env-file", gctest.EnvFile(t, ""), "--postgres-interval", "100ms", "--merge-interval", "100ms"}, args...)
	cmd := exec.Command(gctest.Binary(t), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "POSTGRES_URL="+pgURL, "NODE_ID="+nodeID)
	return gctest.StartCmd(t, cmd, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dbPath)
}

// pgMarkers returns how often each marker (value.m) of a node is in
// PostgreSQL; a row whose columns differ from what gctest.NewEvent(marker)
// sent fails the test.
func pgMarkers(t *testing.T, c *pgx.Conn, nodeID string) map[string]int {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT coalesce(value->>'m', ''), event_type, application, version, platform, user_id, session_id FROM event WHERE node_id = $1", nodeID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var m string
		var got gctest.Event
		if err := rows.Scan(&m, &got.EventType, &got.Application, &got.Version, &got.Platform, &got.UserID, &got.SessionID); err != nil {
			t.Fatal(err)
		}
		want := gctest.NewEvent(m)
		want.Value, want.APIKey = "", ""
		if got != want {
			t.Errorf("node %s: row of marker %q holds %+v, want %+v", nodeID, m, got, want)
		}
		out[m]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitForwarded waits until PostgreSQL holds as many rows of the node as
// its SQLite file, then checks they are the same rows, each once, and that
// every acknowledged event is among them.
func waitForwarded(t *testing.T, c *pgx.Conn, nodeID, dbPath string, l *gctest.Ledger, limit time.Duration) {
	t.Helper()
	_, stored := gctest.Check(t, dbPath)
	var n int
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM event WHERE node_id = $1", nodeID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= len(stored) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := pgMarkers(t, c, nodeID)
	if len(got) != len(stored) || n != len(stored) {
		t.Errorf("node %s: %d rows (%d distinct) in postgresql, %d in sqlite", nodeID, n, len(got), len(stored))
	}
	for m := range stored {
		if got[m] != 1 {
			t.Errorf("node %s: %s is in postgresql %d times, want 1", nodeID, m, got[m])
		}
	}
	inPG := map[string]bool{}
	for m, n := range got {
		inPG[m] = n == 1
	}
	for _, m := range l.Lost(inPG) {
		t.Errorf("node %s: acknowledged %s is in postgresql %d times, want 1", nodeID, m, got[m])
	}
}

// TestForward_ThreeNodes runs three nodes, each with its own SQLite file,
// under load into one PostgreSQL: every acknowledged event arrives once,
// with its node's NODE_ID; /metrics and /healthz show the forwarder.
func TestForward_ThreeNodes(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "three_nodes")
	c := srv.Conn(t, "three_nodes")
	type node struct {
		p  *gctest.Server
		id string
	}
	var nodes []node
	for i := range 3 {
		id := fmt.Sprintf("node-%d", i+1)
		nodes = append(nodes, node{startNode(t, filepath.Join(t.TempDir(), "events.db"), url, id), id})
	}
	var loads []*gctest.Ledger
	for _, n := range nodes {
		loads = append(loads, gctest.Load{Addr: n.p.Addr, Prefix: n.id, Clients: 4, Batches: true}.Start())
	}
	gctest.WaitFor(t, func() bool {
		for _, l := range loads {
			if l.AckedCount() < 300 {
				return false
			}
		}
		return true
	}, "300 events acknowledged by every node")
	for _, l := range loads {
		l.Stop()
	}
	for i, n := range nodes {
		if acked, bad := loads[i].AckedCount(), loads[i].Bad(); acked < 100 || len(bad) > 0 {
			t.Fatalf("%s: %d acknowledged, unexpected answers %v", n.id, acked, bad)
		}
		waitForwarded(t, c, n.id, n.p.DBPath, loads[i], 60*time.Second)
	}
	// A marker carries its node's name, so a row under another node's
	// NODE_ID would show here.
	var misplaced int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM event WHERE NOT starts_with(value->>'m', node_id || '-')").Scan(&misplaced); err != nil {
		t.Fatal(err)
	}
	if misplaced != 0 {
		t.Errorf("%d rows under the wrong node_id", misplaced)
	}
	p := nodes[0].p
	if code, body := gctest.Get(t, p.URL("/healthz")); code != 200 || !strings.Contains(body, `"forwarding":"ok"`) {
		t.Errorf("/healthz: %d %s, want 200 with forwarding ok", code, body)
	}
	_, metrics := gctest.Get(t, p.URL("/metrics"))
	for _, want := range []string{"gocolytics_forward_rows_total ", "gocolytics_forward_lag_events 0\n", "gocolytics_forward_connected 1\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, n := range nodes {
		if strings.Contains(n.p.Log(), pgtest.Password) {
			t.Errorf("%s: the log holds the database password", n.id)
		}
	}
}

// TestForward_Kill9 kills a node with SIGKILL while it forwards a backlog
// in small batches, then starts it again on the same file: every row
// arrives in PostgreSQL exactly once.
func TestForward_Kill9(t *testing.T) {
	gctest.NeedFault(t)
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "kill9")
	c := srv.Conn(t, "kill9")
	dbPath := filepath.Join(t.TempDir(), "events.db")
	var loads []*gctest.Ledger
	rounds := 3
	if gctest.FaultLong() {
		rounds = 10
	}
	for r := range rounds {
		p := startNode(t, dbPath, url, "killed", "--postgres-batch-rows", "50")
		l := gctest.Load{Addr: p.Addr, Prefix: fmt.Sprintf("k%02d", r), Clients: 8, Batches: true}.Start()
		loads = append(loads, l)
		// Kill once PostgreSQL is receiving this round's rows.
		var n, start int
		c.QueryRow(context.Background(), "SELECT count(*) FROM event").Scan(&start)
		deadline := time.Now().Add(20 * time.Second)
		for n < start+300 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			c.QueryRow(context.Background(), "SELECT count(*) FROM event").Scan(&n)
		}
		p.Kill(t)
		l.Stop()
	}
	p := startNode(t, dbPath, url, "killed")
	for _, l := range loads {
		waitForwarded(t, c, "killed", dbPath, l, 60*time.Second)
	}
	p.Stop(t)
}

// TestForward_PostgresDown stops PostgreSQL (immediate mode, as a crash)
// for 20 s while a node is under load: ingest answers 204 throughout,
// /healthz stays 200 and says forwarding is behind, the lag grows, and once
// PostgreSQL is back the lag returns to 0 with every row there once.
// GOCOLYTICS_FAULT_LONG=1 only (it takes about 40 s).
func TestForward_PostgresDown(t *testing.T) {
	if !gctest.FaultLong() {
		t.Skip("GOCOLYTICS_FAULT_LONG=1 runs it (about 40 s)")
	}
	srv := pgtest.Start(t) // its own server: this test stops it
	url := srv.CreateDB(t, "down")
	dbPath := filepath.Join(t.TempDir(), "events.db")
	p := startNode(t, dbPath, url, "survivor")
	l := gctest.Load{Addr: p.Addr, Prefix: "d", Clients: 8, Batches: true}.Start()
	time.Sleep(2 * time.Second)
	srv.Stop(t, "immediate")
	var maxLag float64
	behind := false
	for range 20 {
		time.Sleep(time.Second)
		code, body := gctest.Get(t, p.URL("/healthz"))
		if code != 200 {
			t.Errorf("/healthz %d while postgresql is down: %s", code, body)
		}
		behind = behind || strings.Contains(body, "forwarding to postgresql is behind")
		_, m := gctest.Get(t, p.URL("/metrics"))
		var lag float64
		for _, line := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(line, "gocolytics_forward_lag_events "); ok {
				fmt.Sscan(v, &lag)
			}
		}
		maxLag = max(maxLag, lag)
	}
	if !behind {
		t.Errorf("/healthz never said forwarding is behind while postgresql was down")
	}
	if maxLag < 100 {
		t.Errorf("the lag reached only %.0f events while postgresql was down", maxLag)
	}
	srv.StartAgain(t)
	time.Sleep(2 * time.Second)
	l.Stop()
	if len(l.Bad()) > 0 || l.Failed() > 0 || l.Unknown() > 0 {
		t.Errorf("ingest was not all 204: failed %d, unanswered %d, %v", l.Failed(), l.Unknown(), l.Bad())
	}
	c := srv.Conn(t, "down")
	waitForwarded(t, c, "survivor", dbPath, l, 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, m := gctest.Get(t, p.URL("/metrics")); strings.Contains(m, "gocolytics_forward_lag_events 0\n") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, m := gctest.Get(t, p.URL("/metrics")); !strings.Contains(m, "gocolytics_forward_lag_events 0\n") {
		t.Errorf("the lag did not return to 0")
	}
	if code, body := gctest.Get(t, p.URL("/healthz")); code != 200 || !strings.Contains(body, `"forwarding":"ok"`) {
		t.Errorf("/healthz after recovery: %d %s", code, body)
	}
	t.Logf("acknowledged %d events; lag peaked at %.0f events", l.AckedCount(), maxLag)
}

// TestNginxMultiNodeRecipe runs deploy/nginx-multinode.conf in front of
// three nodes forwarding to one PostgreSQL, with the settings the recipe
// names: each client (a loopback address of its own) stays on one node, so
// its rate limit of 3/minute is exact — the fourth request is a 429 — and
// every accepted event is in PostgreSQL once, under that node's NODE_ID.
func TestNginxMultiNodeRecipe(t *testing.T) {
	t.Parallel()
	needLoopbackClients(t)
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "multinode")
	c := srv.Conn(t, "multinode")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	root := writeCertificate(t, "nginx", certFile, keyFile)

	var args []string
	recipe := recipeArgs(t, "../../deploy/nginx-multinode.conf")
	for i := 0; i < len(recipe); i += 2 {
		switch recipe[i] {
		case "--postgres-url", "--node-id", "--trusted-proxies":
			continue // the test's own database and names; nginx runs on 127.0.0.1 here
		}
		args = append(args, recipe[i], recipe[i+1])
	}
	args = append(args, "--trusted-proxies", "127.0.0.1")
	var upstreams []string
	for i := range 3 {
		metrics := []string{"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", gctest.FreePort(t))}
		p := startNode(t, filepath.Join(t.TempDir(), "events.db"), url, fmt.Sprintf("node-%d", i+1), append(args, metrics...)...)
		upstreams = append(upstreams, p.Addr)
	}
	httpPort, httpsPort := gctest.FreePort(t), gctest.FreePort(t)
	startNginxRecipe(t, "../../deploy/nginx-multinode.conf", upstreams, httpPort, httpsPort, certFile, keyFile)

	const clients = 8
	for i := range clients {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		cl := clientFrom(ip, root)
		for k := range 4 {
			e := gctest.NewEvent(fmt.Sprintf("multi-%s-%d", ip, k))
			e.UserID = ip // the client, for the query below
			body := e.JSON()
			want := 204
			if k == 3 {
				want = 429
			}
			if got := send(t, cl, fmt.Sprintf("http://127.0.0.1:%d/v1.0/event", httpPort), "203.0.113.9", body); got != want {
				t.Fatalf("client %s, request %d: status %d, want %d", ip, k+1, got, want)
			}
		}
	}
	var total, users, perUser, nodesUsed int
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c.QueryRow(context.Background(), "SELECT count(*) FROM event").Scan(&total)
		if total >= clients*3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	err := c.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT user_id), max(n), count(DISTINCT node_id)
		FROM (SELECT user_id, node_id, count(*) OVER (PARTITION BY user_id) AS n,
		             count(*) OVER (PARTITION BY user_id, node_id) AS m FROM event) e WHERE n = m`).Scan(&total, &users, &perUser, &nodesUsed)
	if err != nil {
		t.Fatal(err)
	}
	if total != clients*3 || users != clients || perUser != 3 {
		t.Errorf("postgresql has %d rows of %d clients (each client on one node, %d rows at most), want %d of %d with 3 each",
			total, users, perUser, clients*3, clients)
	}
	if nodesUsed < 2 {
		t.Errorf("%d clients all went to %d node(s); the hash should spread them", clients, nodesUsed)
	}
}

// TestForward_LocalRetention: with LOCAL_RETENTION_DAYS, rows from 2020 are
// deleted locally once they are in PostgreSQL, recent ones kept; a node
// that cannot reach PostgreSQL deletes nothing.
func TestForward_LocalRetention(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "local_retention")
	c := srv.Conn(t, "local_retention")

	unreachable := agedDatabase(t)
	down := startNode(t, unreachable, fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/x?connect_timeout=1", pgtest.Password, gctest.FreePort(t)), "down", "--local-retention-days", "30")
	path := agedDatabase(t)
	startNode(t, path, url, "pruned", "--local-retention-days", "30")
	deadline := time.Now().Add(60 * time.Second)
	for queryInt(t, path, "SELECT count(*) FROM event WHERE user_id = 'old'") > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := queryInt(t, path, "SELECT count(*) FROM event"); n != 25 {
		t.Errorf("%d rows left, want the 25 recent ones", n)
	}
	var inPG int
	if err := c.QueryRow(context.Background(), "SELECT count(DISTINCT src_id) FROM event WHERE node_id = 'pruned'").Scan(&inPG); err != nil {
		t.Fatal(err)
	}
	if inPG != 3025 {
		t.Errorf("postgresql has %d rows of the node, want all 3025", inPG)
	}
	if n := queryInt(t, unreachable, "SELECT count(*) FROM event"); n != 3025 {
		t.Errorf("the node without postgresql has %d rows, want all 3025 (nothing forwarded, nothing deleted)", n)
	}
	if strings.Contains(down.Log(), pgtest.Password) {
		t.Errorf("the log holds the password")
	}
}

// TestForward_Erase: DELETE /v1.0/users/… and gocolytics forget on a
// forwarding node erase the player in PostgreSQL too; other players stay.
func TestForward_Erase(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "erase_api")
	c := srv.Conn(t, "erase_api")
	p := startNode(t, filepath.Join(t.TempDir(), "events.db"), url, "eraser", "--admin-keys", `["`+testAdminKey+`"]`)
	postEvents(t, p.Addr, victimEvents("victim", "A", 50))
	postEvents(t, p.Addr, victimEvents("quitter", "A", 20))
	postEvents(t, p.Addr, victimEvents("bystander", "A", 30))
	count := func(user string) int {
		var n int
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM event WHERE user_id = $1", user).Scan(&n); err != nil {
			return -1 // the forwarder has not created the table yet
		}
		return n
	}
	gctest.WaitFor(t, func() bool { return count("victim")+count("quitter")+count("bystander") == 100 }, "100 rows in postgresql")
	if code, body, _ := adminReq(t, "DELETE", "http://"+p.Addr+"/v1.0/users/victim", testAdminKey); code != 200 || body != `{"deleted":50}` {
		t.Errorf("erase: %d %s, want 200 {\"deleted\":50}", code, body)
	}
	if stdout, stderr, code := cli(t, "forget", "quitter", "--sqlite-file-path", p.DBPath); code != 0 || stdout != "{\"deleted\":20}\n" {
		t.Errorf("forget: exit %d, %q %q", code, stdout, stderr)
	}
	if v, q, b := count("victim"), count("quitter"), count("bystander"); v != 0 || q != 0 || b != 30 {
		t.Errorf("postgresql after erasure: victim %d, quitter %d, bystander %d rows; want 0, 0, 30", v, q, b)
	}
}
