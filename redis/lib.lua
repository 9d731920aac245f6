local VERSION = 53 -- raise with every change: processes load only a newer library
redis.register_function{function_name = 'chatgw_version', flags = {'no-writes'},
                        callback = function() return VERSION end}
--[[
chatgw -- the domain core: one Redis function library (docs/architecture.md, "Redis functions").

Assembled by tools/gen_schema.py --lua-lib from the schema's CG prelude and these parts, in this
order (a part may use what the parts before it define; the assembler fails the build otherwise;
the Makefile reads the list from here):
  lib.lua        this header: the library's VERSION, and answer() (the shape of the answers)
  desk.lua       helpers every domain uses: numbers, desk metrics (kpi_add), response SLAs
  conv.lua       conversations and messages: cg_message (the log, idempotency, survey answers,
                 outbound copies), cg_trim (bounded work streams)
  assign.lua     the assignment engine: agents' capacity, best agent, offers, overflow,
                 escalation, sticky agents, serve_queue
  queue.lua      queues: cg_queuecfg, cg_deskcfg, cg_enqueue, cg_queue_list, cg_conv_info, the
                 assignment outbox, cg_transfer, cg_reclassify, cg_canned_set
  agent.lua      agents and presence: cg_presence, cg_status, cg_pick, cg_gw_reap
  timer.lua      timers and SLA: cg_timer_claim, cg_timer_fire, cg_sla_customer/agent,
                 cg_offer_arm, route_fire (the offer and overflow timers)
  complaint.lua  complaints: cg_complaint (tickets), the follow-up task of a closed complaint
  close.lua      how conversations end: cg_close, cg_customer_close, cg_reopen, cg_after_close,
                 cg_close_fire
  event.lua      one call per event, its arguments one msgpack map: cg_customer_msg,
                 cg_announce, the agents' commands and presence, the timers (cg_close_timer,
                 cg_pos_timer, cg_sla_timer, cg_route_timer), cg_outbox_announce; every
                 assignment an event makes is announced in its call (announce_all)

Both the gateway and the router carry the same library and load it when Redis holds none, or an
older VERSION (common/rlib.c, docs/architecture.md "Loading and health"). Every function takes the
tenant anchor CG.KEY.tenant() as its one key (KEYS[1]); every key it touches shares that key's
hash tag {t:<tenant>}, so a desk is one Redis Cluster slot. Every function is atomic: any number
of gateways and routers may call them at once.

The releases before this one carried two libraries, chatgw_conv (up to VERSION 3) and
chatgw_route (up to 6), with the same function names and arguments. Loading this library deletes
them in the same transaction (common/rlib.c), and it answers their version functions with
LEGACY_VERSION, above any of theirs: a process of those releases still running in a rolling
upgrade keeps this library instead of loading its own over it.
]]
local LEGACY_VERSION = 1000000
redis.register_function{function_name = 'chatgw_conv_version', flags = {'no-writes'},
                        callback = function() return LEGACY_VERSION end}
redis.register_function{function_name = 'chatgw_route_version', flags = {'no-writes'},
                        callback = function() return LEGACY_VERSION end}

-- Every function that answers with named fields (the event functions of event.lua, cg_gw_reap,
-- cg_timer_claim) answers by name: answer(kind, t) is the RESP2 array {kind, name1, value1,
-- name2, value2, ...} of the fields of t, names sorted (deterministic; hiredis 0.14 has no RESP3
-- maps). A nested value stays an array (a ROW {conv, agent, agent_name, queue, assign_no,
-- channel}, a list of ROWs, an answer); a nil field is left out. Errors stay error replies. The
-- router reads it with router/evres.c, the tests with tests/integration/desk.py named().
-- The arguments of a function that takes one msgpack map (the calls of this release) or, from a
-- process of an earlier release still running in a rolling upgrade, positional strings (the calls
-- of that release, answered as that release answered them): (t, true) for a map; (t, false) with
-- t[names[i]] = args[i] for positional ones (docs/architecture.md, "Library versions").
local function map_or_args(args, names)
    if #args == 1 then
        local b = string.byte(args[1], 1)
        if b and ((b >= 0x80 and b <= 0x8f) or b == 0xde or b == 0xdf) then
            local ok, t = pcall(cmsgpack.unpack, args[1])
            if ok and type(t) == 'table' then return t, true end
        end
    end
    local t = {}
    for i, n in ipairs(names) do t[n] = args[i] end
    return t, false
end

local function answer(kind, t)
    local names = {}
    for k in pairs(t or {}) do names[#names + 1] = k end
    table.sort(names)
    local out = {kind}
    for _, k in ipairs(names) do
        out[#out + 1] = k
        out[#out + 1] = t[k]
    end
    return out
end
