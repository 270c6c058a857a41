-- wrk -s deploy/wrk/batch100.lua http://127.0.0.1:8000
-- Batches of 100 events per request, POST /v1.0/events, each event from a
-- random player, as a relay that gathers many players' events would send
-- (WRK_DATA=identical: the same batch every time). See common.lua.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

events_per_request = 100
wrk.method = "POST"
wrk.path = "/v1.0/events"
if identical then
  local events = {}
  for i = 1, events_per_request do events[i] = identical_event() end
  wrk.body = "[" .. table.concat(events, ",") .. "]"
else
  function request()
    local events = {}
    for i = 1, events_per_request do events[i] = realistic_event() end
    return wrk.format(nil, nil, nil, "[" .. table.concat(events, ",") .. "]")
  end
end
