package admin

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
)

// erase answers DELETE /v1.0/users/{user_id}[?application=]: every row of
// the user deleted through the writer, {"deleted": N} once committed.
func (h *Handlers) erase(ctx *fasthttp.RequestCtx) {
	// The raw path, percent-decoded here: the cleaned path would turn a
	// user id such as "a//b/" into another one.
	raw := ctx.URI().PathOriginal()
	if i := bytes.Index(raw, []byte(UsersPath)); i >= 0 {
		raw = raw[i+len(UsersPath):]
	}
	user, err := url.PathUnescape(string(raw))
	if err != nil || user == "" {
		writeProblem(ctx, paramProblem("path", "user_id", "must be a percent-encoded user id, not empty"))
		return
	}
	if utf8.RuneCountInString(user) > h.cfg.MaxIDLength {
		writeProblem(ctx, paramProblem("path", "user_id", fmt.Sprintf("ensure this value has at most %d characters", h.cfg.MaxIDLength)))
		return
	}
	app := string(ctx.QueryArgs().Peek("application"))
	if utf8.RuneCountInString(app) > h.cfg.MaxIDLength {
		writeProblem(ctx, paramProblem("query", "application", fmt.Sprintf("ensure this value has at most %d characters", h.cfg.MaxIDLength)))
		return
	}
	if h.cfg.Eraser == nil {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, (&ingest.Problem{Detail: "Erasure is not available"}).Body())
		return
	}
	n, err := h.cfg.Eraser.Erase(context.Background(), user, app)
	if err != nil {
		h.log.Error("erase failed", "deleted", n, "err", err)
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, (&ingest.Problem{
			Detail: fmt.Sprintf("Erasure failed after %d rows were deleted; try again to delete the rest: %v", n, err)}).Body())
		return
	}
	h.log.Info("erased a user's rows", "deleted", n, "application_filter", app != "")
	writeJSON(ctx, fasthttp.StatusOK, append(strconv.AppendInt([]byte(`{"deleted":`), n, 10), '}'))
}
