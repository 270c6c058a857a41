-- wrk -s deploy/wrk/godot.lua http://127.0.0.1:8000
-- Like many Godot games at once: POST /v1.0/events with batches of 1 to 50
-- events in the exact shape of the Pycolytics Godot plugin (no Content-Type,
-- Godot's User-Agent, the eight keys in its order), each batch from one of
-- 1000 players with their own user_id (8 hex digits) and session_id (64).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

local players = 1000
local types = { "startup", "level_start", "level_complete", "death", "settings", "shutdown" }
local values = {
  "{}", '{"level":3}', '{"level":3,"time":41.25}', '{"fps":1e99999}',
  '{"resolution":"1920x1080","fullscreen":true,"volume":0.8}',
  '{"inventory":["sword","shield"],"gold":1234}',
}

local function hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(t)
end

local users, sessions = {}, {}

function init(args)
  math.randomseed(os.time() * 100 + (thread_id or 0))
  for i = 1, players do
    users[i], sessions[i] = hex(8), hex(64)
  end
end

function request()
  local p = math.random(1, players)
  local n = math.random(1, 50)
  local events = {}
  for i = 1, n do
    events[i] = event(types[math.random(#types)], users[p], sessions[p], values[math.random(#values)])
  end
  sent_events = sent_events + n
  return wrk.format("POST", "/v1.0/events",
    { ["User-Agent"] = "GodotEngine/4.4.1.stable.official.49a5bc7b6 (Linux)", ["Accept"] = "*/*" },
    "[" .. table.concat(events, ",") .. "]")
end
