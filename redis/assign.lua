-- redis/assign.lua -- the assignment engine: who gets which waiting conversation (a part of the
-- chatgw library: redis/lib.lua).

--[[
Any number of routers may call the functions of queue.lua, agent.lua, timer.lua and close.lua
concurrently: a conversation is assigned at most once, an agent never above its cap, and never
while it is not online with an open socket.

An assignment ROW, returned wherever conversations get assigned, is
  {conv, agent, agent_name, queue, assign_no, channel}
Every assignment also SADDs conv to cg:outbox:assign; the router removes it (cg_outbox_done) once
it has logged the `assigned` event and published it on cg:a:<agent>.

Queue modes: a queue is push unless cg:queuecfg:<queue> says mode pull. Push queues assign the
best available agent at once (enqueue, agent online, a slot freed); conversations of a pull queue
wait until an agent picks them (cg_pick), they are never assigned by these functions otherwise.
A queue in cg:closed (outside its business hours) is held like a pull queue until it opens.

]]

local E13 = 1e13

-- serving()'s answers per queue, remembered in the Lua state until an agent's routing state
-- changes (avail_refresh, avail_remove_all forget them all): a burst of waiting conversations
-- counts the agents once, not once per conversation.
local serving_memo = {}


local function split(csv)
    local out = {}
    for s in string.gmatch(csv or '', '[^,]+') do out[#out + 1] = s end
    return out
end

local function has(list, x)
    for _, v in ipairs(list) do
        if v == x then return true end
    end
    return false
end

-- The agent's routing state.
local function agent_info(agent)
    local h = redis.call('HMGET', CG.KEY.agent(agent), 'status', 'load', 'cap', 'skills', 'last_assign',
        'name')
    return {
        id = agent,
        status = h[1] or 'offline',
        load = tonumber(h[2]) or 0,
        cap = tonumber(h[3]) or 0,
        skills = split(h[4]),
        last = tonumber(h[5]) or 0,
        name = (h[6] and h[6] ~= '') and h[6] or agent,
    }
end

-- True when a conversation of weight w fits the agent's cap: its load (the sum of its
-- conversations' weights) plus w; w defaults to the lightest channel's.
local function fits(info, w)
    return info.load + (w or min_weight()) <= info.cap + 0.0005
end

-- True when the agent may get one more conversation of weight w now: online, connected, fits.
local function can_take(info, w)
    if info.status ~= 'online' or not fits(info, w) then return false end
    return redis.call('SCARD', CG.KEY.agent_socks(info.id)) > 0
end

-- The weight a conversation takes of its agent's cap: its channel's.
local function conv_weight(conv)
    return channel_weight(redis.call('HGET', CG.KEY.conv(conv), 'channel'))
end

-- Give the agent's slot of conv back: load - the weight conv took at its assignment (its
-- channel's before weights were stored), never below 0.
local function load_release(info, conv)
    if info.load <= 0 then return end
    local w = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'weight')) or conv_weight(conv)
    info.load = math.max(0, info.load - w)
    redis.call('HSET', CG.KEY.agent(info.id), 'load', fmt_load(info.load))
end

-- Put the agent in (or take it out of) cg:avail:<skill> for every skill.
local function avail_refresh(info)
    serving_memo = {}
    local ok = can_take(info)
    local score = fmt(info.load * E13 + info.last)
    local on = info.status == 'online' and redis.call('SCARD', CG.KEY.agent_socks(info.id)) > 0
    for _, s in ipairs(info.skills) do
        if on then
            redis.call('SADD', CG.KEY.online(s), info.id)
        else
            redis.call('SREM', CG.KEY.online(s), info.id)
        end
        if ok then
            redis.call('ZADD', CG.KEY.avail(s), score, info.id)
        else
            redis.call('ZREM', CG.KEY.avail(s), info.id)
        end
    end
end

local function avail_remove_all(info)
    serving_memo = {}
    for _, s in ipairs(info.skills) do
        redis.call('ZREM', CG.KEY.avail(s), info.id)
        redis.call('SREM', CG.KEY.online(s), info.id)
    end
end

-- The ROWs assign() made during the event call being run, in order (event.lua: event_begin,
-- announce_all), nil outside one: every assignment an event makes is announced by that call.
local ASSIGNED = nil

-- Assign queued conv to the agent. Returns the assignment ROW (also kept in ASSIGNED).
local function assign(conv, info, now)
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'queue', 'channel')
    local queue = c[1] or ''
    if queue ~= '' then redis.call('ZREM', CG.KEY.queue(queue), conv) end
    local w = channel_weight(c[2])
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'assigned', 'agent', info.id, 'assigned_at', now,
        'weight', fmt_load(w))
    local no = redis.call('HINCRBY', CG.KEY.conv(conv), 'assign_no', 1)
    redis.call('SADD', CG.KEY.agent_convs(info.id), conv)
    info.load = info.load + w
    info.last = tonumber(now) or 0
    redis.call('HSET', CG.KEY.agent(info.id), 'load', fmt_load(info.load), 'last_assign', now)
    avail_refresh(info)
    redis.call('SADD', CG.KEY.outbox_assign(), conv)
    local row = {conv, info.id, info.name, queue, no, c[2] or ''}
    if ASSIGNED then ASSIGNED[#ASSIGNED + 1] = row end
    return row
end

-- True when the queue assigns nothing by itself: a pull queue, or one outside its business hours
-- (member of cg:closed, kept by the routers). Agents may still pick from it.
local function is_held(queue)
    if redis.call('SISMEMBER', CG.KEY.closed_queues(), queue) == 1 then return true end
    return redis.call('HGET', CG.KEY.queuecfg(queue), 'mode') == 'pull'
end

-- The rolling average handling time (assigned -> closed, ms) of queue; 0 until measured.
local function avg_ms(queue)
    return tonumber(redis.call('HGET', CG.KEY.stats(queue), 'avg_ms')) or 0
end

-- The best available agent for queue with room for a conversation of weight w (nil = the
-- lightest), dropping stale avail entries (and passing over those too full for w). nil when none.
local function best_agent(queue, w)
    local skip = 0
    while skip < 50 do
        local r = redis.call('ZRANGE', CG.KEY.avail(queue), skip, skip)
        if #r == 0 then return nil end
        local info = agent_info(r[1])
        if not (can_take(info) and has(info.skills, queue)) then
            redis.call('ZREM', CG.KEY.avail(queue), r[1])
        elseif can_take(info, w) then
            return info
        else
            skip = skip + 1
        end
    end
    return nil
end

-- ---- routing helpers: sticky agents and overflow (see the routing block at the end) ----------

local MAX_SCAN = 200 -- waiting conversations looked at per queue for overflow deadlines

-- The rings of queue (bullseye routing, as Genesys): {rings = {{after = ms, to = {queues}}, ...}
-- (by after; each ring's queues include those of the rings inside it), to = every ring's queues,
-- after = the first ring's ms}, or nil when it has none. From cg:queuecfg:<queue> overflow:
-- rings "<ms>:<q>,<q>;<ms>:<q>" (router/store.c), or queues (one ring after overflow_after_s).
local function overflow_cfg(queue)
    local h = redis.call('HMGET', CG.KEY.queuecfg(queue), 'overflow', 'overflow_after_s')
    local rings, to = {}, {}
    if h[1] and string.find(h[1], ':', 1, true) then
        for ms, list in string.gmatch(h[1], '(%d+):([^;]+)') do
            rings[#rings + 1] = {after = tonumber(ms), to = split(list)}
        end
    else
        local after = (tonumber(h[2]) or 0) * 1000
        if after > 0 then rings[1] = {after = after, to = split(h[1])} end
    end
    table.sort(rings, function(a, b) return a.after < b.after end)
    for _, r in ipairs(rings) do
        for _, q in ipairs(to) do
            if not has(r.to, q) then r.to[#r.to + 1] = q end
        end
        for _, q in ipairs(r.to) do
            if not has(to, q) then to[#to + 1] = q end
        end
    end
    if #rings == 0 or #to == 0 then return nil end
    return {rings = rings, to = to, after = rings[1].after}
end

-- The ring a conversation has reached after waiting `waited` ms: its index (0: none yet).
local function ring_of(cfg, waited)
    local k = 0
    for i, r in ipairs(cfg.rings) do
        if waited >= r.after then k = i end
    end
    return k
end

-- True when agents of one of skills may take a conversation that reached ring k.
local function ring_serves(cfg, k, skills)
    if k == 0 then return false end
    for _, s in ipairs(skills) do
        if has(cfg.rings[k].to, s) then return true end
    end
    return false
end

-- Arm overflow:<queue> for conv's overflow deadline (queued_at + overflow_after_s), keeping an
-- earlier one. No-op for a queue without overflow.
local function overflow_arm(queue, conv)
    local cfg = overflow_cfg(queue)
    if not cfg then return end
    local at = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'queued_at')) or 0
    redis.call('ZADD', CG.KEY.timers(), 'LT', fmt(at + cfg.after), 'overflow:' .. queue)
end

-- The first waiting conversation of queue (in queue order) whose ring at now lets agents of one
-- of skills take it: conv, score; nil when none.
local function overflow_head(queue, cfg, now, skills)
    local r = redis.call('ZRANGE', CG.KEY.queue(queue), 0, MAX_SCAN - 1, 'WITHSCORES')
    for i = 1, #r, 2 do
        local c = redis.call('HMGET', CG.KEY.conv(r[i]), 'state', 'queued_at')
        local waited = now - (tonumber(c[2]) or now)
        if c[1] == 'queued' and ring_serves(cfg, ring_of(cfg, waited), skills) then
            return r[i], tonumber(r[i + 1])
        end
    end
    return nil
end

-- The overflowing queues (cg:overflowing) whose overflow list names one of skills:
-- {{q = queue, cfg = cfg}, ...}. push_only: skip held sources and held target skills.
local function overflow_sources(skills, push_only)
    local out = {}
    for _, q in ipairs(redis.call('SMEMBERS', CG.KEY.overflowing())) do
        local cfg = overflow_cfg(q)
        if cfg and not (push_only and is_held(q)) then
            for _, s in ipairs(skills) do
                if has(cfg.to, s) and not (push_only and is_held(s)) then
                    out[#out + 1] = {q = q, cfg = cfg}
                    break
                end
            end
        end
    end
    return out
end

-- While the agent can take more, assign it overdue conversations of queues overflowing into its
-- skills (best queue score first), appending the ROWs to out.
local function overflow_offer(info, now, out)
    if redis.call('SCARD', CG.KEY.overflowing()) == 0 then return end
    local srcs = overflow_sources(info.skills, true)
    local t = tonumber(now) or 0
    while #srcs > 0 and can_take(info) do
        local best, best_score
        for _, src in ipairs(srcs) do
            local conv, score = overflow_head(src.q, src.cfg, t, info.skills)
            if conv and (best == nil or score < best_score) then best, best_score = conv, score end
        end
        if not best or not can_take(info, conv_weight(best)) then return end
        out[#out + 1] = assign(best, info, now)
    end
end

-- True when conv (waiting in queue) may be picked by the agent through overflow: queue is
-- overflowing into one of its skills and conv is past its deadline.
local function overflow_pickable(conv, queue, info, now)
    for _, src in ipairs(overflow_sources(info.skills, false)) do
        if src.q == queue then
            local at = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'queued_at')) or 0
            return ring_serves(src.cfg, ring_of(src.cfg, (tonumber(now) or 0) - at), info.skills)
        end
    end
    return false
end

-- Append to the queue list out (rows of cg_queue_list, up to limit) the overdue conversations of
-- the queues overflowing into queue, positions continuing.
local function overflow_list(queue, out, limit)
    if redis.call('SCARD', CG.KEY.overflowing()) == 0 then return end
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    for _, src in ipairs(overflow_sources({queue}, false)) do
        local convs = redis.call('ZRANGE', CG.KEY.queue(src.q), 0, MAX_SCAN - 1)
        for _, conv in ipairs(convs) do
            if #out >= limit then return end
            local c = redis.call('HMGET', CG.KEY.conv(conv), 'queued_at', 'channel', 'prio', 'preview',
                'state')
            local at = tonumber(c[1]) or 0
            local k = ring_of(src.cfg, now - at)
            if c[5] == 'queued' and ring_serves(src.cfg, k, {queue}) then
                out[#out + 1] = {conv, #out + 1, at, c[2] or '', tonumber(c[3]) or 0, c[4] or '', k}
            end
        end
    end
end

-- ---- escalation (sla_action escalate): an escalated conversation keeps waiting in its own
-- queue (visible to, and assignable to, the agents who serve it) and is also pushed to the agents
-- of the escalation queue: cg:escalated:<escalation queue> holds it while it waits.

-- The best escalated conversation still waiting for the agents of queue `to`: conv, score (its
-- score in its own queue); nil when none. Members no longer waiting are dropped on the way.
local function escalated_head(to)
    local k = CG.KEY.escalated(to)
    local best, best_score
    for _, conv in ipairs(redis.call('SMEMBERS', k)) do
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'queue')
        local score = c[1] == 'queued' and c[2] and redis.call('ZSCORE', CG.KEY.queue(c[2]), conv)
        if not score then
            redis.call('SREM', k, conv)
        elseif best == nil or tonumber(score) < best_score then
            best, best_score = conv, tonumber(score)
        end
    end
    return best, best_score
end

-- While the agent can take more, assign it the escalated conversations waiting for its skills
-- (best first; escalation queues outside their business hours excepted), appending ROWs to out.
local function escalated_offer(info, now, out)
    while can_take(info) do
        local best, best_score
        for _, s in ipairs(info.skills) do
            if redis.call('SISMEMBER', CG.KEY.closed_queues(), s) == 0 then
                local conv, score = escalated_head(s)
                if conv and (best == nil or score < best_score) then best, best_score = conv, score end
            end
        end
        if not best or not can_take(info, conv_weight(best)) then return end
        out[#out + 1] = assign(best, info, now)
    end
end

-- True when the agent may pick conv because it is escalated to one of the agent's skills.
local function escalated_pickable(conv, info)
    for _, s in ipairs(info.skills) do
        if redis.call('SISMEMBER', CG.KEY.escalated(s), conv) == 1 then return true end
    end
    return false
end

-- Append to the queue list out (rows of cg_queue_list, up to limit) the conversations escalated
-- to queue that wait elsewhere, positions continuing.
local function escalated_list(queue, out, limit)
    local k = CG.KEY.escalated(queue)
    if redis.call('SCARD', k) == 0 then return end
    local rows = {}
    for _, conv in ipairs(redis.call('SMEMBERS', k)) do
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'queued_at', 'channel', 'prio', 'preview',
            'state', 'queue')
        if c[5] == 'queued' and c[6] ~= queue then
            rows[#rows + 1] = {conv, 0, tonumber(c[1]) or 0, c[2] or '', tonumber(c[3]) or 0,
                c[4] or ''}
        end
    end
    table.sort(rows, function(a, b)
        if a[5] ~= b[5] then return a[5] > b[5] end
        return a[3] < b[3]
    end)
    for _, row in ipairs(rows) do
        if #out >= limit then return end
        row[2] = #out + 1
        out[#out + 1] = row
    end
end

-- True when someone can serve queue now or later without a configuration change: an agent with
-- the skill is online (away counts not), or one of the queues it overflows into has one.
local function staffed(queue)
    if redis.call('SCARD', CG.KEY.online(queue)) > 0 then return true end
    local cfg = overflow_cfg(queue)
    for _, q in ipairs(cfg and cfg.to or {}) do
        if redis.call('SCARD', CG.KEY.online(q)) > 0 then return true end
    end
    return false
end

-- The serving capacity of queue, for the wait estimate (redis/event.lua wait_estimate): slots, the
-- conversations the agents online for it (cg:online:<queue>, status online) hold at once (the sum
-- of their caps), and free, how many more they can take now. At most 500 agents are counted.
local function serving(queue)
    local m = serving_memo[queue]
    if m then return m[1], m[2] end
    local slots, free = 0, 0
    local ids = redis.call('SMEMBERS', CG.KEY.online(queue))
    for i = 1, math.min(#ids, 500) do
        local h = redis.call('HMGET', CG.KEY.agent(ids[i]), 'status', 'load', 'cap')
        local load, cap = tonumber(h[2]) or 0, tonumber(h[3]) or 0
        if h[1] == 'online' and cap > 0 then
            slots = slots + cap
            if cap > load then free = free + cap - load end
        end
    end
    serving_memo[queue] = {slots, free}
    return slots, free
end

-- The returning customer's last agent (cg:cust:<customer> last_agent within window_ms of
-- last_agent_at) when it is online with free capacity and serves queue; else nil.
local function sticky_agent(conv, queue, now, window_ms)
    if window_ms <= 0 then return nil end
    local cust = redis.call('HGET', CG.KEY.conv(conv), 'customer')
    if not cust then return nil end
    local h = redis.call('HMGET', CG.KEY.cust(cust), 'last_agent', 'last_agent_at')
    if not h[1] or (tonumber(now) or 0) - (tonumber(h[2]) or 0) > window_ms then return nil end
    local info = agent_info(h[1])
    if can_take(info, conv_weight(conv)) and has(info.skills, queue) then return info end
    return nil
end

-- While the agent can take more, assign it the best waiting conversation across its skills
-- (push queues only). Returns the list of ROWs.
local function offer(info, now)
    local out = {}
    local push = {}
    for _, s in ipairs(info.skills) do
        if not is_held(s) then push[#push + 1] = s end
    end
    while can_take(info) do
        local best, best_score, best_q
        for _, s in ipairs(push) do
            local r = redis.call('ZRANGE', CG.KEY.queue(s), 0, 0, 'WITHSCORES')
            if #r > 0 and (best == nil or tonumber(r[2]) < best_score) then
                best, best_score, best_q = r[1], tonumber(r[2]), s
            end
        end
        if not best then break end
        if redis.call('HGET', CG.KEY.conv(best), 'state') ~= 'queued' then
            redis.call('ZREM', CG.KEY.queue(best_q), best)
        elseif not can_take(info, conv_weight(best)) then
            break -- the best waiting one is heavier than the room left: it waits for more room
        else
            out[#out + 1] = assign(best, info, now)
        end
    end
    overflow_offer(info, now, out)
    escalated_offer(info, now, out)
    return out
end

-- The ROW of the current assignment of conv, or {} when it is not assigned.
local function current_row(conv)
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'queue', 'assign_no', 'channel')
    if c[1] ~= 'assigned' or not c[2] then return {} end
    local name = redis.call('HGET', CG.KEY.agent(c[2]), 'name')
    if not name or name == '' then name = c[2] end
    return {conv, c[2], name, c[3] or '', tonumber(c[4]) or 0, c[5] or ''}
end


-- Assign the waiting conversations of push queue to its available agents, best first.
-- Returns the number assigned.
local function serve_queue(queue, now)
    local n = 0
    while true do
        local head = redis.call('ZRANGE', CG.KEY.queue(queue), 0, 0)
        if #head == 0 then return n end
        local info = best_agent(queue, conv_weight(head[1]))
        if not info then return n end
        if redis.call('HGET', CG.KEY.conv(head[1]), 'state') == 'queued' then
            assign(head[1], info, now)
            n = n + 1
        else
            redis.call('ZREM', CG.KEY.queue(queue), head[1])
        end
    end
end
