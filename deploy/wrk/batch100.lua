-- wrk -s deploy/wrk/batch100.lua http://127.0.0.1:8000
-- Batches of 100 events per request, POST /v1.0/events.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

events_per_request = 100
local events = {}
for i = 1, events_per_request do
  events[i] = event("batch", "7acafdde", "1df3ede7c90f9e9d8738aa6cdc1a75ec437da75b0536301b273b9d09a4d017ee",
    '{"i":' .. i .. ',"time":41.25}')
end
wrk.method = "POST"
wrk.path = "/v1.0/events"
wrk.body = "[" .. table.concat(events, ",") .. "]"
