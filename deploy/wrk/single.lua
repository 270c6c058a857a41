-- wrk -s deploy/wrk/single.lua http://127.0.0.1:8000
-- One event per request, POST /v1.0/event: a random player's event each time
-- (WRK_DATA=identical: the same event every time). See common.lua.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

events_per_request = 1
wrk.method = "POST"
wrk.path = "/v1.0/event"
if identical then
  wrk.body = identical_event()
else
  function request()
    return wrk.format(nil, nil, nil, realistic_event())
  end
end
