-- wrk -c 20 -s deploy/wrk/quiet.lua http://127.0.0.1:8000
-- A quiet game: each connection is one Godot player who sends a batch of one
-- or two events every 0 to 6 seconds (3 s on average), so 20 connections
-- send about 10 events a second in all. See godot.lua and common.lua.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "godot.lua")

function delay()
  return math.random(0, 6000)
end

function request()
  return wrk.format("POST", "/v1.0/events", godot_headers, batch(math.random(1, 2)))
end
