-- wrk -s deploy/wrk/single.lua http://127.0.0.1:8000
-- One event per request, POST /v1.0/event, the same event every time.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

events_per_request = 1
wrk.method = "POST"
wrk.path = "/v1.0/event"
wrk.body = event("single", "7acafdde", "1df3ede7c90f9e9d8738aa6cdc1a75ec437da75b0536301b273b9d09a4d017ee", '{"level":3}')
