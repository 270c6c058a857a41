package chromium

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Page is a headless Chromium driven over the DevTools protocol (on a
// pipe: --remote-debugging-pipe, messages of JSON ended by a NUL byte), for
// tests that act on a page as a user does (pick, click, resize) rather
// than only load it (Run). One tab; ended when the test ends.
type Page struct {
	t       testing.TB
	cmd     *exec.Cmd
	in      *os.File // Chromium reads commands here (its fd 3)
	session string

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan reply
	console []string
	stderr  bytes.Buffer
	closed  chan struct{}
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Open starts Chromium with a fresh profile and a window of width x height
// CSS pixels, and attaches to its tab (blank until Navigate).
func Open(t testing.TB, chromium string, width, height int) *Page {
	t.Helper()
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Page{t: t, in: cmdW, waiting: map[int]chan reply{}, closed: make(chan struct{})}
	args := append(flags(t), "--remote-debugging-pipe", fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars", "about:blank")
	p.cmd = exec.Command(chromium, args...)
	p.cmd.ExtraFiles = []*os.File{cmdR, outW} // fds 3 and 4
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, b: &p.stderr}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	cmdR.Close()
	outW.Close()
	t.Cleanup(func() {
		cmdW.Close()
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.cmd.Wait()
		outR.Close()
	})
	go p.read(outR)

	var targets struct {
		TargetInfos []struct {
			TargetID string `json:"targetId"`
			Type     string `json:"type"`
		} `json:"targetInfos"`
	}
	p.call("", "Target.getTargets", nil, &targets)
	target := ""
	for _, ti := range targets.TargetInfos {
		if ti.Type == "page" {
			target = ti.TargetID
		}
	}
	if target == "" {
		t.Fatalf("chromium has no tab: %+v", targets)
	}
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	p.call("", "Target.attachToTarget", map[string]any{"targetId": target, "flatten": true}, &attached)
	p.session = attached.SessionID
	p.Call("Runtime.enable", nil, nil)
	p.Call("Log.enable", nil, nil)
	p.Call("Page.enable", nil, nil)
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// read hands replies to their callers and keeps the page's console
// messages, uncaught exceptions and logged errors.
func (p *Page) read(r *os.File) {
	defer close(p.closed)
	br := bufio.NewReader(r)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			reply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil {
			continue
		}
		p.mu.Lock()
		switch {
		case m.ID != 0:
			if ch, ok := p.waiting[m.ID]; ok {
				ch <- m.reply
				delete(p.waiting, m.ID)
			}
		case m.Method == "Runtime.consoleAPICalled" || m.Method == "Runtime.exceptionThrown" || m.Method == "Log.entryAdded":
			p.console = append(p.console, m.Method+" "+string(m.Params))
		}
		p.mu.Unlock()
	}
}

// call sends a command (to the browser when session is empty) and decodes
// its result into out (if not nil); an error reply fails the test.
func (p *Page) call(session, method string, params any, out any) {
	p.t.Helper()
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	ch := make(chan reply, 1)
	p.waiting[id] = ch
	p.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b, err := json.Marshal(msg)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.in.Write(append(b, 0)); err != nil {
		p.t.Fatalf("%s: %v", method, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case r := <-ch:
		if r.Error != nil {
			p.t.Fatalf("%s: %s", method, r.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(r.Result, out); err != nil {
				p.t.Fatalf("%s: %v in %s", method, err, r.Result)
			}
		}
	case <-p.closed:
		p.t.Fatalf("%s: chromium went away\n%s", method, p.Stderr())
	case <-ctx.Done():
		p.t.Fatalf("%s: no answer in 30 s", method)
	}
}

// Call sends a command to the tab.
func (p *Page) Call(method string, params any, out any) {
	p.t.Helper()
	p.call(p.session, method, params, out)
}

// Navigate loads url in the tab (WaitFor then waits for what the page
// does after loading).
func (p *Page) Navigate(url string) {
	p.t.Helper()
	p.Call("Page.navigate", map[string]any{"url": url}, nil)
}

// Eval runs expression in the page (awaiting it if it is a promise) and
// decodes its value, as JSON, into out (if not nil). An exception fails the
// test.
func (p *Page) Eval(expression string, out any) {
	p.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	p.Call("Runtime.evaluate", map[string]any{"expression": expression, "returnByValue": true, "awaitPromise": true}, &r)
	if r.ExceptionDetails != nil {
		p.t.Fatalf("%s: %s %s", expression, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			p.t.Fatalf("%s: %v in %s", expression, err, r.Result.Value)
		}
	}
}

// WaitFor evaluates condition (a JavaScript expression) every 50 ms until
// it is true (an exception counts as false: the page may still be
// loading), and fails the test after timeout.
func (p *Page) WaitFor(condition string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		p.Eval("(() => { try { return !!("+condition+"); } catch (e) { return false; } })()", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var html string
			p.Eval("document.documentElement.outerHTML", &html)
			p.t.Fatalf("still not %s after %v; the page:\n%s", condition, timeout, html)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Screenshot saves the tab as a PNG file.
func (p *Page) Screenshot(path string) {
	p.t.Helper()
	var r struct {
		Data string `json:"data"`
	}
	p.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r)
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// Console returns the page's console messages, uncaught exceptions and
// logged entries so far, and Chromium's own console lines on stderr.
func (p *Page) Console() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]string(nil), p.console...)
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			out = append(out, line)
		}
	}
	return out
}

// Stderr is what Chromium printed so far.
func (p *Page) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}
