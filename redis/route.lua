#!lua name=chatgw_route
local VERSION = 6 -- raise with every change: processes load only a newer library
redis.register_function{function_name = 'chatgw_route_version', flags = {'no-writes'},
                        callback = function() return VERSION end}
--[[
chatgw_route -- queues, agents and assignment (docs/architecture.md, "Redis keys").
Loaded by the router when Redis holds no chatgw_route or an older VERSION (common/rlib.c), with the
schema's CG prelude. Every function is atomic, so any
number of routers may call them concurrently: a conversation is assigned at most once, an agent
never above its cap, and never while it is not online with an open socket.

An assignment ROW, returned wherever conversations get assigned, is
  {conv, agent, agent_name, queue, assign_no, channel}
Every assignment also SADDs conv to cg:outbox:assign; the router removes it (cg_outbox_done) once
it has logged the `assigned` event and published it on cg:a:<agent>.

Queue modes: a queue is push unless cg:queuecfg:<queue> says mode pull. Push queues assign the
best available agent at once (enqueue, agent online, a slot freed); conversations of a pull queue
wait until an agent picks them (cg_pick), they are never assigned by these functions otherwise.
A queue in cg:closed (outside its business hours) is held like a pull queue until it opens.

FCALL cg_queuecfg 0 now_ms [queue mode prio name_zh name_en overflow overflow_after_s closed
                              next_change] ...
  Replace the whole queue configuration (the router's [queue] sections): HSET cg:queuecfg:<queue>
  with the fields mode .. overflow_after_s for every queue given, SADD cg:queues; closed = 1 (the
  queue is outside its business hours) puts it in the set cg:closed (else it is removed); a
  next_change > 0 (ms) arms the timer hours:<queue> then (0 removes it). Queues of the previous
  configuration not given any more lose their cg:queuecfg (so they are push again) and their
  cg:canned hash. Then every open push queue with waiting conversations and available agents is
  served (a queue switched
  from pull to push, or just opened); those assignments are announced through the outbox.
  -> number of conversations assigned.
  Errors: BADARG.
FCALL cg_enqueue 0 conv queue prio now_ms [category] [locale] [pos_ms] [sticky_ms]
  Only from state new: state queued, queue, prio, category, queued_at, locale; ZADD
  cg:queue:<queue> with score (9-prio)*1e13+now_ms; then, in an open push queue, assigns the best
  available agent of cg:avail:<queue> at once. Left waiting with pos_ms > 0 (a chat channel): the
  position timer pos:<conv> is armed for now_ms + pos_ms.
  -> {'assigned', ROW} | {'queued', position, queue_length, avg_ms, held, staffed}   (held 1: a
     pull or closed queue; avg_ms: the queue's measured handling time, 0 when none; staffed 0:
     no agent of the queue, nor of a queue it overflows into, is online: counted as no_agent in
     cg:kpi:queue:<queue>)
   | {'already', state, ROW or {}}   (state was not new: nothing changed; ROW when assigned)
  Errors: NOCONV.
FCALL cg_presence 0 agent sock up name cap skills_csv now_ms [ts_ms]
  up 1: SADD the socket, store name/cap/skills (empty name/cap keep the old ones); up 0: SREM it
  and remember it in cg:agent:<a>:gone (24 h), so that a connect processed after its own
  disconnect (two routers) is ignored. Sockets present and status offline/absent -> online; no
  socket -> offline (out of every avail). ts_ms (the event's time, default now_ms) is recorded
  as status_ts with the status. Then, when online with free capacity, offers it the best waiting
  conversations of its skills (push queues only).  -> {ROW, ...} the conversations assigned now
  The socket "<gateway>:<n>" is also kept in its gateway's index cg:gw:<gateway>:socks (see
  cg_gw_reap); a connect of a gateway reaped as dead (cg:gw:<gateway>:reaped, no liveness key)
  is ignored.
FCALL cg_status 0 agent status now_ms [ts_ms]
  status online | away, ignored when older than status_ts (events processed out of order by
  different routers). away: out of every avail. online: back in avail when a socket is open,
  then offered waiting conversations. The status is kept even with no socket (an `away` processed
  before its connect stays away).  -> {ROW, ...}     Errors: BADARG.
FCALL cg_pick 0 conv agent now_ms
  (push or pull queue) conv must be queued in one of the agent's skills; the agent connected (online, or away: an
  away agent gets nothing pushed but may still pull) with free capacity.
  -> {'assigned', queue, ROW}   Errors: PICKFAIL <reason>.
FCALL cg_close 0 conv agent resolution now_ms
  conv must be assigned to agent: state closed, closed_at, resolution, agent load - 1, and the
  freed slot is offered the best waiting conversation of the agent's skills (push queues only).
  -> {'closed', channel, {ROW, ...}, locale}, or {'already', channel, {}, locale} when this agent
  had already closed it (a re-processed command). Also drops the conversation's timers and adds
  its assigned -> closed time to cg:stats:<queue> (rolling average avg_ms over the last ~20, n).
  Counts the close in cg:kpi:queue:<queue> and cg:kpi:agent:<agent> (closed; resolved,
  resolution time and fcr for a code starting with "resolved"; abandoned: see kpi_close).
  Errors: NOTASSIGNED, CLOSED (closed by another agent).
FCALL cg_queue_list 0 queue limit
  -> {{conv, position, queued_at, channel, prio, preview}, ...} the first `limit` waiting.
FCALL cg_conv_info 0 conv           (read only)
  -> {state, channel, queue, position, in_outbox, ROW or {}, avg_ms, locale, held, staffed}
  state '' when it does not exist; position 0 unless queued; staffed as cg_enqueue's.
FCALL cg_outbox_done 0 conv         -> 1 if it was in the outbox, else 0
FCALL cg_outbox_list 0 limit
  -> {ROW, ...} for up to `limit` outbox conversations still assigned (others are dropped).
]]

local E13 = 1e13


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

-- True when the agent may get one more conversation now.
local function can_take(info)
    if info.status ~= 'online' or info.load >= info.cap then return false end
    return redis.call('SCARD', CG.KEY.agent_socks(info.id)) > 0
end

-- Put the agent in (or take it out of) cg:avail:<skill> for every skill.
local function avail_refresh(info)
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
    for _, s in ipairs(info.skills) do
        redis.call('ZREM', CG.KEY.avail(s), info.id)
        redis.call('SREM', CG.KEY.online(s), info.id)
    end
end

-- Assign queued conv to the agent. Returns the assignment ROW.
local function assign(conv, info, now)
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'queue', 'channel')
    local queue = c[1] or ''
    if queue ~= '' then redis.call('ZREM', CG.KEY.queue(queue), conv) end
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'assigned', 'agent', info.id, 'assigned_at', now)
    local no = redis.call('HINCRBY', CG.KEY.conv(conv), 'assign_no', 1)
    redis.call('SADD', CG.KEY.agent_convs(info.id), conv)
    info.load = redis.call('HINCRBY', CG.KEY.agent(info.id), 'load', 1)
    info.last = tonumber(now) or 0
    redis.call('HSET', CG.KEY.agent(info.id), 'last_assign', now)
    avail_refresh(info)
    redis.call('SADD', CG.KEY.outbox_assign(), conv)
    return {conv, info.id, info.name, queue, no, c[2] or ''}
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

-- The best available agent for queue, dropping stale avail entries. nil when none.
local function best_agent(queue)
    while true do
        local r = redis.call('ZRANGE', CG.KEY.avail(queue), 0, 0)
        if #r == 0 then return nil end
        local info = agent_info(r[1])
        if can_take(info) and has(info.skills, queue) then return info end
        redis.call('ZREM', CG.KEY.avail(queue), r[1])
    end
end

-- ---- routing helpers: sticky agents and overflow (see the routing block at the end) ----------

local MAX_SCAN = 200 -- waiting conversations looked at per queue for overflow deadlines

-- The overflow configuration of queue: {to = {queues}, after = ms}, or nil when it has none.
local function overflow_cfg(queue)
    local h = redis.call('HMGET', CG.KEY.queuecfg(queue), 'overflow', 'overflow_after_s')
    local after = (tonumber(h[2]) or 0) * 1000
    local to = split(h[1])
    if after <= 0 or #to == 0 then return nil end
    return {to = to, after = after}
end

-- Arm overflow:<queue> for conv's overflow deadline (queued_at + overflow_after_s), keeping an
-- earlier one. No-op for a queue without overflow.
local function overflow_arm(queue, conv)
    local cfg = overflow_cfg(queue)
    if not cfg then return end
    local at = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'queued_at')) or 0
    redis.call('ZADD', CG.KEY.timers(), 'LT', fmt(at + cfg.after), 'overflow:' .. queue)
end

-- The first waiting conversation of queue (in queue order) past its overflow deadline at now:
-- conv, score; nil when none.
local function overflow_head(queue, cfg, now)
    local r = redis.call('ZRANGE', CG.KEY.queue(queue), 0, MAX_SCAN - 1, 'WITHSCORES')
    for i = 1, #r, 2 do
        local c = redis.call('HMGET', CG.KEY.conv(r[i]), 'state', 'queued_at')
        if c[1] == 'queued' and (tonumber(c[2]) or 0) + cfg.after <= now then
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
            local conv, score = overflow_head(src.q, src.cfg, t)
            if conv and (best == nil or score < best_score) then best, best_score = conv, score end
        end
        if not best then return end
        out[#out + 1] = assign(best, info, now)
    end
end

-- True when conv (waiting in queue) may be picked by the agent through overflow: queue is
-- overflowing into one of its skills and conv is past its deadline.
local function overflow_pickable(conv, queue, info, now)
    for _, src in ipairs(overflow_sources(info.skills, false)) do
        if src.q == queue then
            local at = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'queued_at')) or 0
            return at + src.cfg.after <= (tonumber(now) or 0)
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
            if c[5] == 'queued' and at + src.cfg.after <= now then
                out[#out + 1] = {conv, #out + 1, at, c[2] or '', tonumber(c[3]) or 0, c[4] or ''}
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
        if not best then return end
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
    local h = redis.call('HGET', CG.KEY.queuecfg(queue), 'overflow')
    for _, q in ipairs(split(h)) do
        if redis.call('SCARD', CG.KEY.online(q)) > 0 then return true end
    end
    return false
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
    if can_take(info) and has(info.skills, queue) then return info end
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
        if redis.call('HGET', CG.KEY.conv(best), 'state') == 'queued' then
            out[#out + 1] = assign(best, info, now)
        else
            redis.call('ZREM', CG.KEY.queue(best_q), best)
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

local function cg_enqueue(keys, args)
    local conv, queue, prio, now = args[1], args[2], tonumber(args[3]) or 5, args[4]
    local category, locale, pos_ms = args[5] or '', args[6] or '', tonumber(args[7]) or 0
    local sticky_ms = tonumber(args[8]) or 0

    if queue == nil or queue == '' or now == nil then
        return redis.error_reply('BADARG conv queue prio now_ms expected')
    end
    local state = redis.call('HGET', CG.KEY.conv(conv), 'state')
    if not state then return redis.error_reply('NOCONV no such conversation') end
    if state ~= 'new' then return {'already', state, current_row(conv)} end
    if prio < 0 then prio = 0 end
    if prio > 9 then prio = 9 end
    prio = math.floor(prio)
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'queue', queue, 'prio', prio, 'queued_at',
        now, 'category', category)
    if locale ~= '' then redis.call('HSET', CG.KEY.conv(conv), 'locale', locale) end
    redis.call('ZADD', CG.KEY.queue(queue), fmt((9 - prio) * E13 + (tonumber(now) or 0)), conv)
    local info = nil
    local held = is_held(queue)
    if not held then info = sticky_agent(conv, queue, now, sticky_ms) or best_agent(queue) end
    if info then return {'assigned', assign(conv, info, now)} end
    overflow_arm(queue, conv)
    local rank = redis.call('ZRANK', CG.KEY.queue(queue), conv)
    local ok = staffed(queue)
    if pos_ms > 0 then -- pos_last: the position the customer was told (0: nobody is online)
        redis.call('HSET', CG.KEY.conv(conv), 'pos_last', ok and rank + 1 or 0, 'pos_at', now)
        redis.call('ZADD', CG.KEY.timers(), 'NX', fmt((tonumber(now) or 0) + pos_ms), 'pos:' .. conv)
    end
    if not ok then redis.call('HINCRBY', CG.KEY.kpi_queue(queue), 'no_agent', 1) end
    return {'queued', rank + 1, redis.call('ZCARD', CG.KEY.queue(queue)), avg_ms(queue),
        held and 1 or 0, ok and 1 or 0}
end

local GONE_KEEP_MS = 86400000

-- Set the agent's status from an event of time ts (ms), as its newest known status.
local function set_status(info, status, ts)
    redis.call('HSET', CG.KEY.agent(info.id), 'status', status, 'status_ts', fmt(ts))
    info.status = status
end

-- The gateway id of a socket "<gateway>:<n>" (everything before the last ':'), or nil.
local function sock_gw(sock)
    return string.match(sock, '^(.*):[^:]*$')
end

-- The socket is closed (its disconnect, or its gateway was reaped): out of the agent's sockets
-- and of its gateway's index, remembered in cg:agent:<a>:gone (24 h, the latest GONE_KEEP_N:
-- only a connect processed after its own disconnect is looked up there, so memory stays bounded
-- for an agent that reconnects all day).
local GONE_KEEP_N = 256
local function sock_drop(agent, sock, ts)
    redis.call('SREM', CG.KEY.agent_socks(agent), sock)
    local gw = sock_gw(sock)
    if gw then redis.call('ZREM', CG.KEY.gw_socks(gw), sock .. ' ' .. agent) end
    redis.call('ZADD', CG.KEY.agent_gone(agent), fmt(ts), sock)
    redis.call('ZREMRANGEBYSCORE', CG.KEY.agent_gone(agent), '-inf', fmt(ts - GONE_KEEP_MS))
    redis.call('ZREMRANGEBYRANK', CG.KEY.agent_gone(agent), 0, -(GONE_KEEP_N + 1))
    redis.call('PEXPIRE', CG.KEY.agent_gone(agent), GONE_KEEP_MS)
end

-- After the agent's sockets changed: online when one is open and it was offline, offline when
-- none is; then its avail/online entries. -> the agent's info
local function presence_settle(agent, ts)
    local k = CG.KEY.agent(agent)
    local info = agent_info(agent)
    local n = redis.call('SCARD', CG.KEY.agent_socks(agent))
    if n > 0 and info.status == 'offline' then
        set_status(info, 'online', ts)
    elseif n == 0 and redis.call('HGET', k, 'status') ~= 'offline' then
        set_status(info, 'offline', ts)
    end
    avail_refresh(info)
    return info
end

local function cg_presence(keys, args)
    local agent, sock, up, name, cap, skills, now, ts = unpack(args)
    if now == nil or agent == '' then
        return redis.error_reply('BADARG agent sock up name cap skills_csv now_ms expected')
    end
    ts = tonumber(ts) or tonumber(now) or 0
    local k = CG.KEY.agent(agent)
    if up == '1' then
        -- its disconnect was processed first (another router): the socket is already gone
        if redis.call('ZSCORE', CG.KEY.agent_gone(agent), sock) then return {} end
        -- indexed under the run of its gateway (the boot its liveness key holds, cg_gw_reap); a
        -- connect processed after its gateway was reaped as dead is gone with it
        local gw = sock_gw(sock)
        local boot = gw and redis.call('GET', CG.KEY.gw(gw))
        if gw and not boot and redis.call('EXISTS', CG.KEY.gw_reaped(gw)) == 1 then
            return {}
        end
        redis.call('SADD', CG.KEY.agent_socks(agent), sock)
        if gw then
            redis.call('ZADD', CG.KEY.gw_socks(gw), fmt(tonumber(boot or 0) or 0),
                sock .. ' ' .. agent)
        end
        local old = agent_info(agent)
        avail_remove_all(old)
        redis.call('HSET', k, 'skills', skills)
        if name ~= '' then redis.call('HSET', k, 'name', name) end
        if cap ~= '' then redis.call('HSET', k, 'cap', tonumber(cap) or 1) end
        redis.call('HSETNX', k, 'load', 0)
    else
        sock_drop(agent, sock, ts)
    end
    return offer(presence_settle(agent, ts), now)
end

local function cg_status(keys, args)
    local agent, status, now = args[1], args[2], args[3]
    local ts = tonumber(args[4]) or tonumber(now) or 0
    if status ~= 'online' and status ~= 'away' then
        return redis.error_reply('BADARG status must be online or away')
    end
    local k = CG.KEY.agent(agent)
    -- an older event processed late (another router) must not undo a newer one
    local last = tonumber(redis.call('HGET', k, 'status_ts')) or 0
    if ts < last then return {} end
    local info = agent_info(agent)
    set_status(info, status, ts)
    avail_refresh(info)
    return offer(info, now)
end

local function cg_pick(keys, args)
    local conv, agent, now = args[1], args[2], args[3]
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'queue')
    if c[1] ~= 'queued' then
        return redis.error_reply('PICKFAIL conversation is not waiting in a queue')
    end
    local info = agent_info(agent)
    if not has(info.skills, c[2]) and not overflow_pickable(conv, c[2], info, now) and
        not escalated_pickable(conv, info) then
        return redis.error_reply('PICKFAIL conversation is not in one of your queues')
    end
    if redis.call('SCARD', CG.KEY.agent_socks(agent)) == 0 then
        return redis.error_reply('PICKFAIL you are not connected')
    end
    if info.load >= info.cap then return redis.error_reply('PICKFAIL you are at capacity') end
    return {'assigned', c[2], assign(conv, info, now)}
end

-- Add the conversation's assigned -> closed time to its queue's rolling average (the last ~20).
local function stats_add(conv, now)
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'queue', 'assigned_at')
    local at, t = tonumber(c[2]), tonumber(now)
    if not c[1] or c[1] == '' or not at or not t or t < at then return end
    local k = CG.KEY.stats(c[1])
    local n = redis.call('HINCRBY', k, 'n', 1)
    local avg = tonumber(redis.call('HGET', k, 'avg_ms')) or 0
    if n > 20 then n = 20 end
    redis.call('HSET', k, 'avg_ms', fmt(avg + (t - at - avg) / n))
end

-- ---- desk metrics (kpi_add, kpi_ms: redis/shared/desk.lua) ----------------------------------

-- cg_close counted: closed; a resolved code (starting with "resolved", as for complaint follow-ups)
-- also resolved, its resolution time (queued_at or created -> now) and fcr when it was never
-- re-assigned (assign_no 1, no prev_agent: no transfer, offer timeout, reassign or unresolved);
-- no_response with no agent answer to the customer (answers, await_since: cg_append) is abandoned.
local function kpi_close(conv, agent, resolution, now)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'queue', 'queued_at', 'created', 'assign_no',
        'prev_agent', 'answers', 'await_since')
    local kv = {'closed', 1}
    if string.sub(resolution, 1, 8) == 'resolved' then
        kv = {'closed', 1, 'resolved', 1, 'resolution_ms', kpi_ms(h[2] or h[3], now),
            'resolution_n', 1}
        if h[4] == '1' and not h[5] then
            kv[#kv + 1] = 'fcr'
            kv[#kv + 1] = 1
        end
    end
    kpi_add(h[1], agent, kv)
    local gone = resolution == 'no_response' or resolution == 'customer_left'
    if gone and (tonumber(h[6]) or 0) == 0 and h[7] then
        kpi_add(h[1], nil, {'abandoned', 1})
    end
end

-- Drop every timer of conv (it is closed).
local function timers_drop(conv)
    for _, kind in ipairs({'pos', 'first', 'next', 'complaint_respond', 'complaint_resolve'}) do
        redis.call('ZREM', CG.KEY.timers(), kind .. ':' .. conv)
    end
end

local function cg_close(keys, args)
    local conv, agent, resolution, now = args[1], args[2], args[3], args[4]
    if now == nil then return redis.error_reply('BADARG conv agent resolution now_ms expected') end
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'channel', 'locale')
    if c[1] == 'closed' then
        if c[2] == agent then return {'already', c[3] or '', {}, c[4] or ''} end
        return redis.error_reply('CLOSED conversation is closed')
    end
    if c[1] ~= 'assigned' or c[2] ~= agent then
        return redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    if resolution == '' then resolution = 'resolved' end
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'closed', 'closed_at', now, 'resolution', resolution)
    stats_add(conv, now)
    kpi_close(conv, agent, resolution, now)
    timers_drop(conv)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    local info = agent_info(agent)
    if info.load > 0 then info.load = redis.call('HINCRBY', CG.KEY.agent(agent), 'load', -1) end
    avail_refresh(info)
    return {'closed', c[3] or '', offer(info, now), c[4] or ''}
end

-- Assign the waiting conversations of push queue to its available agents, best first.
-- Returns the number assigned.
local function serve_queue(queue, now)
    local n = 0
    while true do
        local head = redis.call('ZRANGE', CG.KEY.queue(queue), 0, 0)
        if #head == 0 then return n end
        local info = best_agent(queue)
        if not info then return n end
        if redis.call('HGET', CG.KEY.conv(head[1]), 'state') == 'queued' then
            assign(head[1], info, now)
            n = n + 1
        else
            redis.call('ZREM', CG.KEY.queue(queue), head[1])
        end
    end
end

local QCFG_FIELDS = {'mode', 'prio', 'name_zh', 'name_en', 'overflow', 'overflow_after_s'}
local QCFG_ARGS = #QCFG_FIELDS + 3 -- queue, the fields, closed, next_change

local function cg_queuecfg(keys, args)
    local per = QCFG_ARGS
    local now = args[1]
    if now == nil or (#args - 1) % per ~= 0 then
        return redis.error_reply(
            'BADARG now_ms [queue mode prio name_zh name_en overflow after closed next] ...')
    end
    local given, touched = {}, {}
    for i = 2, #args, per do
        local q = args[i]
        if q == '' or (args[i + 1] ~= 'push' and args[i + 1] ~= 'pull') then
            return redis.error_reply('BADARG bad queue name or mode')
        end
        given[q] = i
        touched[#touched + 1] = q
    end
    for _, q in ipairs(redis.call('SMEMBERS', CG.KEY.queues())) do
        if not given[q] then
            redis.call('DEL', CG.KEY.queuecfg(q), CG.KEY.canned(q))
            redis.call('SREM', CG.KEY.queues(), q)
            redis.call('SREM', CG.KEY.closed_queues(), q)
            redis.call('ZREM', CG.KEY.timers(), 'hours:' .. q)
            touched[#touched + 1] = q
        end
    end
    for q, i in pairs(given) do
        local h = {}
        for k, f in ipairs(QCFG_FIELDS) do
            h[#h + 1] = f
            h[#h + 1] = args[i + k]
        end
        redis.call('DEL', CG.KEY.queuecfg(q))
        redis.call('HSET', CG.KEY.queuecfg(q), unpack(h))
        redis.call('SADD', CG.KEY.queues(), q)
        if args[i + 7] == '1' then
            redis.call('SADD', CG.KEY.closed_queues(), q)
        else
            redis.call('SREM', CG.KEY.closed_queues(), q)
        end
        local change = tonumber(args[i + 8]) or 0
        if change > 0 then
            redis.call('ZADD', CG.KEY.timers(), fmt(change), 'hours:' .. q)
        else
            redis.call('ZREM', CG.KEY.timers(), 'hours:' .. q)
        end
    end
    local n = 0
    for _, q in ipairs(touched) do
        if not is_held(q) then n = n + serve_queue(q, now) end
    end
    return n
end

local function cg_queue_list(keys, args)
    local queue, limit = args[1], tonumber(args[2]) or 50
    if limit < 1 then return {} end
    local convs = redis.call('ZRANGE', CG.KEY.queue(queue), 0, limit - 1)
    local out = {}
    for i, conv in ipairs(convs) do
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'queued_at', 'channel', 'prio', 'preview')
        out[#out + 1] = {conv, i, tonumber(c[1]) or 0, c[2] or '', tonumber(c[3]) or 0, c[4] or ''}
    end
    overflow_list(queue, out, limit)
    escalated_list(queue, out, limit)
    return out
end

local function cg_conv_info(keys, args)
    local conv = args[1]
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'channel', 'queue', 'locale')
    if not c[1] then return {'', '', '', 0, 0, {}, 0, '', 0} end
    local pos = 0
    if c[1] == 'queued' and c[3] then
        local rank = redis.call('ZRANK', CG.KEY.queue(c[3]), conv)
        if rank then pos = rank + 1 end
    end
    local outbox = redis.call('SISMEMBER', CG.KEY.outbox_assign(), conv)
    local q = c[3] or ''
    return {c[1], c[2] or '', q, pos, outbox, current_row(conv), q ~= '' and avg_ms(q) or 0,
        c[4] or '', (q ~= '' and is_held(q)) and 1 or 0, (q == '' or staffed(q)) and 1 or 0}
end

local function cg_outbox_done(keys, args)
    return redis.call('SREM', CG.KEY.outbox_assign(), args[1])
end

local function cg_outbox_list(keys, args)
    local limit = tonumber(args[1]) or 100
    local out = {}
    for _, conv in ipairs(redis.call('SRANDMEMBER', CG.KEY.outbox_assign(), limit)) do
        local row = current_row(conv)
        if #row == 0 then
            redis.call('SREM', CG.KEY.outbox_assign(), conv)
        else
            out[#out + 1] = row
        end
    end
    return out
end


-- ---- timers, SLA, complaints -------------------------------------------------------------------

local EVENTS_MAX = 100000

local function cg_timer_claim(keys, args)
    local now, lease, limit = tonumber(args[1]), tonumber(args[2]), tonumber(args[3]) or 50
    if not now or not lease then return redis.error_reply('BADARG now_ms lease_ms limit') end
    local due = redis.call('ZRANGEBYSCORE', CG.KEY.timers(), '-inf', fmt(now), 'LIMIT', 0, limit)
    local out = {}
    for _, member in ipairs(due) do
        local until_ms = fmt(now + lease)
        redis.call('ZADD', CG.KEY.timers(), until_ms, member)
        out[#out + 1] = {member, until_ms}
    end
    return out
end

-- Record a breach of kind on conv (c: its state before the action): counter on the conversation,
-- an entry in cg:events, and sla:<kind> + 1 in the kpi counters of the queue it was in and of
-- its agent when it was assigned.
local function breach_record(conv, kind, action, now, c)
    redis.call('HINCRBY', CG.KEY.conv(conv), 'sla_breaches', 1)
    kpi_add(c.queue, c.state == 'assigned' and c.agent or nil, {'sla:' .. kind, 1})
    redis.call('XADD', CG.KEY.events(), 'MAXLEN', '~', EVENTS_MAX, '*', 'type', 'sla_breach', 'conv',
        conv, 'kind', kind, 'action', action, 'ts', now)
end

-- Move queued conv to queue `to` at priority 9 (keeping its arrival time); serve `to`.
local function requeue(conv, c, to, now)
    if c.queue ~= '' then redis.call('ZREM', CG.KEY.queue(c.queue), conv) end
    local at = tonumber(c.queued_at) or tonumber(now) or 0
    redis.call('HSET', CG.KEY.conv(conv), 'queue', to, 'prio', 9)
    if c.queue ~= to then redis.call('HSET', CG.KEY.conv(conv), 'escalated_from', c.queue) end
    redis.call('ZADD', CG.KEY.queue(to), fmt(at), conv)
    if not is_held(to) then serve_queue(to, now) end
end

-- Take assigned conv back from its agent into its queue (priority 9) and serve the queue.
local function unassign(conv, c, now)
    local info = agent_info(c.agent)
    redis.call('SREM', CG.KEY.agent_convs(c.agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    if info.load > 0 then info.load = redis.call('HINCRBY', CG.KEY.agent(c.agent), 'load', -1) end
    avail_refresh(info)
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'prev_agent', c.agent)
    redis.call('HDEL', CG.KEY.conv(conv), 'agent')
    requeue(conv, c, c.queue, now)
end

-- The breach action on conv. Returns what happened to it: moved | notified | raised | requeued.
local function breach_act(conv, c, action, to, now)
    if action == 'raise_priority' then
        if c.state ~= 'queued' then return 'noted' end
        local prio = math.min(9, (tonumber(c.prio) or 5) + 2)
        local at = tonumber(c.queued_at) or tonumber(now) or 0
        redis.call('HSET', CG.KEY.conv(conv), 'prio', prio)
        redis.call('ZADD', CG.KEY.queue(c.queue), 'XX', fmt((9 - prio) * E13 + at), conv)
        return 'raised'
    end
    if action == 'reassign' then
        if c.state ~= 'assigned' then return 'noted' end
        unassign(conv, c, now)
        return 'requeued'
    end
    redis.call('HSET', CG.KEY.conv(conv), 'escalated', 1)
    if c.state ~= 'queued' then return 'notified' end
    -- it keeps waiting in its own queue, first in line (priority 9, its arrival kept), for its
    -- own agents and for the agents of `to`, who get it pushed when one has a free slot
    local at = tonumber(c.queued_at) or tonumber(now) or 0
    redis.call('HSET', CG.KEY.conv(conv), 'prio', 9, 'escalated_to', to)
    redis.call('ZADD', CG.KEY.queue(c.queue), 'XX', fmt(at), conv)
    redis.call('SADD', CG.KEY.escalated(to), conv)
    if not is_held(c.queue) then serve_queue(c.queue, now) end
    if redis.call('HGET', CG.KEY.conv(conv), 'state') == 'queued' and
        redis.call('SISMEMBER', CG.KEY.closed_queues(), to) == 0 then
        local info = best_agent(to)
        if info then assign(conv, info, now) end
    end
    return 'escalated'
end

local function fire_pos(conv, member, c, now, update_ms, max_ms)
    if c.state ~= 'queued' then return {'done'} end
    local rank = redis.call('ZRANK', CG.KEY.queue(c.queue), conv)
    if not rank then return {'done'} end
    redis.call('ZADD', CG.KEY.timers(), fmt(now + update_ms), member)
    local pos = rank + 1
    local last = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'pos_last')) or 0
    local at = tonumber(redis.call('HGET', CG.KEY.conv(conv), 'pos_at')) or 0
    local closed = redis.call('SISMEMBER', CG.KEY.closed_queues(), c.queue) == 1
    if closed then return {'done'} end
    -- nobody who could serve it is online: no position updates; a customer who was told a
    -- position is told once that nobody is online now (pos_last 0), and hears its position again
    -- when someone is
    if not staffed(c.queue) then
        if last == 0 then return {'done'} end
        redis.call('HSET', CG.KEY.conv(conv), 'pos_last', 0, 'pos_at', fmt(now))
        local n = redis.call('HINCRBY', CG.KEY.conv(conv), 'pos_n', 1)
        return {'noagent', conv, c.channel, c.queue, c.locale, n}
    end
    local send = pos ~= last or now - at >= max_ms
    if not send then return {'done'} end
    redis.call('HSET', CG.KEY.conv(conv), 'pos_last', pos, 'pos_at', fmt(now))
    local n = redis.call('HINCRBY', CG.KEY.conv(conv), 'pos_n', 1)
    return {'pos', conv, pos, c.channel, c.queue, avg_ms(c.queue), c.locale, n}
end

--[[
FCALL cg_timer_claim 0 now_ms lease_ms limit
  Take up to `limit` timers of cg:timers due at now_ms: each gets the score now_ms + lease_ms (so
  another router takes it over only if this one does not fire it within the lease).
  -> {{member, lease}, ...}
FCALL cg_timer_fire 0 member lease now_ms update_ms max_ms action escalate_queue
  Fires a claimed timer once: only while its score is still `lease` (else {'stale'}: fired,
  cancelled or re-armed meanwhile). Members: pos:<conv>, first:<conv>, next:<conv>,
  complaint_respond:<conv>, complaint_resolve:<conv>, hours:<queue>.
  pos  -> {'pos', conv, position, channel, queue, avg_ms, locale, n} when the customer is to be
          told (position changed, or max_ms passed), re-armed for now + update_ms; while nobody
          who serves the queue is online {'noagent', conv, channel, queue, locale, n} once (the
          customer had been told a position), then {'done'}; else {'done'}
  SLA  -> {'breach', kind, conv, result, channel, queue, locale, {online agents of escalate_queue},
          ticket, queue before, agent it was taken from (reassign) or ''} after recording the breach and acting (action escalate | raise_priority |
          reassign; see docs/architecture.md "Timers"); {'done'} for a closed conversation.
          The breach counts sla:<kind> in cg:kpi:queue:<queue before> and, when it was
          assigned, cg:kpi:agent:<its agent>.
  hours-> {'hours', queue}: the router re-publishes the queue configuration
]]
local function cg_timer_fire(keys, args)
    local member, lease, now = args[1], args[2], tonumber(args[3])
    local update_ms, max_ms = tonumber(args[4]) or 15000, tonumber(args[5]) or 60000
    local action, to = args[6] or 'escalate', args[7] or 'supervisors'
    if not now then return redis.error_reply('BADARG member lease now_ms ...') end
    local score = redis.call('ZSCORE', CG.KEY.timers(), member)
    if not score or fmt(tonumber(score)) ~= lease then return {'stale'} end
    redis.call('ZREM', CG.KEY.timers(), member)
    local kind, id = string.match(member, '^([%a_]+):(.+)$')
    if not kind then return {'done'} end
    if kind == 'hours' then return {'hours', id} end
    local h = redis.call('HMGET', CG.KEY.conv(id), 'state', 'queue', 'channel', 'locale', 'prio',
        'queued_at', 'agent', 'ticket')
    local c = {state = h[1] or '', queue = h[2] or '', channel = h[3] or '', locale = h[4] or '',
        prio = h[5], queued_at = h[6], agent = h[7] or '', ticket = h[8] or ''}
    if c.state == '' or c.state == 'closed' then return {'done'} end
    if kind == 'pos' then return fire_pos(id, member, c, now, update_ms, max_ms) end
    local result = breach_act(id, c, action, to, fmt(now))
    breach_record(id, kind, action, fmt(now), c)
    local sups = {}
    if action == 'escalate' then sups = redis.call('SMEMBERS', CG.KEY.online(to)) end
    local q = redis.call('HGET', CG.KEY.conv(id), 'queue') or ''
    local prev = result == 'requeued' and c.agent or ''
    return {'breach', kind, id, result, c.channel, q, c.locale, sups, c.ticket, c.queue, prev}
end

-- cg_sla_customer / cg_sla_agent: see redis/shared/desk.lua (cg_append does the same itself).
local function cg_sla_customer(keys, args)
    return sla_customer(args[1], tonumber(args[2]) or 0, tonumber(args[3]) or 0)
end

local function cg_sla_agent(keys, args)
    return sla_agent(args[1], args[2], args[3])
end

--[[
FCALL cg_complaint 1 <tenant> conv yyyymmdd now_ms respond_due resolve_due class [limit window_s]
  Give conv a complaint ticket TS-<yyyymmdd>-<NNNNNN> (INCR cg:complaint:seq:<yyyymmdd>) unless it
  has one; store ticket, complaint_class, complaint_at; arm complaint_respond:<conv> and
  complaint_resolve:<conv>.  -> {ticket, 1 when new else 0}
  limit > 0: at most `limit` new tickets per customer per window_s (cg:lim:ticket:<customer>);
  past it no ticket is minted and no deadline armed: the conversation is given the customer's
  latest ticket (cg:cust:<customer> ticket, '' when none), tickets_limited + 1 for its queue
  -> {latest ticket or '', 0, 'limited'}
]]
local function cg_complaint(keys, args)
    local conv, day, now, respond, resolve, class = unpack(args)
    local limit, window = tonumber(args[7]) or 0, tonumber(args[8]) or 86400
    if not class or not string.match(day, '^%d%d%d%d%d%d%d%d$') then
        return redis.error_reply('BADARG conv yyyymmdd now_ms respond_due resolve_due class')
    end
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'ticket', 'customer')
    if h[1] then return {h[1], 0} end
    local cust = h[2]
    if limit > 0 and cust then
        -- at most `limit` new tickets per customer per window: past it, the conversation is
        -- still a complaint (its queue and priority), told the customer's latest ticket
        local k = CG.KEY.lim_ticket(cust)
        local n = redis.call('INCR', k)
        if n == 1 then redis.call('EXPIRE', k, window) end
        if n > limit then
            local latest = redis.call('HGET', CG.KEY.cust(cust), 'ticket') or ''
            if latest ~= '' then redis.call('HSET', CG.KEY.conv(conv), 'ticket', latest) end
            kpi_add(redis.call('HGET', CG.KEY.conv(conv), 'queue'), nil, {CG.KPI.tickets_limited, 1})
            return {latest, 0, 'limited'}
        end
    end
    local seqkey = CG.KEY.complaint_seq(day)
    local n = redis.call('INCR', seqkey)
    redis.call('EXPIRE', seqkey, 400 * 86400)
    local ticket = string.format('TS-%s-%06d', day, n)
    redis.call('HSET', CG.KEY.conv(conv), 'ticket', ticket, 'complaint_class', class, 'complaint_at', now)
    if cust then redis.call('HSET', CG.KEY.cust(cust), 'ticket', ticket) end
    redis.call('ZADD', CG.KEY.timers(), 'NX', respond, 'complaint_respond:' .. conv)
    redis.call('ZADD', CG.KEY.timers(), 'NX', resolve, 'complaint_resolve:' .. conv)
    return {ticket, 1}
end

-- ---- how conversations end: unresolved, after close, idle close, complaint follow-up ---------

--[[
FCALL cg_reopen 0 conv agent now_ms
  The agent ends conv as unresolved: it is not closed (rule 15). It goes back to its queue at
  priority 9, in its arrival order (queued_at kept), the agent's slot is freed (load - 1), the
  idle timer is dropped and the queue is served without that agent: another available agent gets
  it at once (announced through the outbox). The freed slot is offered other waiting
  conversations only when this one was taken (never this one straight back).
  -> {'requeued', channel, locale, queue, {ROW, ...} offered to the agent}
  Errors: NOTASSIGNED, CLOSED (as cg_close).
FCALL cg_after_close 0 conv survey_until followup_due
  After a close: survey_until (ms, 0 = no survey) is stored once on conv (cg_append takes a rating
  for it until then), idle:<conv> is dropped, followup:<conv> is armed at followup_due when > 0
  and conv has a complaint ticket.  -> the ticket or ''
FCALL cg_close_fire 0 member lease now_ms newconv followup_queue
  Fires a claimed idle:<conv> or followup:<conv> timer once (the lease rule of cg_timer_fire).
  idle     -> conv still assigned: closed with resolution no_response as by its agent (cg_close)
              -> {'idle', conv, agent, channel, locale, {ROW, ...}}
  followup -> a follow-up task newconv: state queued in followup_queue at priority 9, customer,
              channel, locale, name and reply address copied from conv, followup_of = conv,
              followup_ticket, category followup, preview "Follow-up <ticket>"; conv gets
              followup_conv; the queue is served (assignments through the outbox)
              -> {'followup', newconv, queue, ticket, assigned count}
  otherwise {'done'} (nothing to do), or {'stale'}.
]]

local function cg_reopen(keys, args)
    local conv, agent, now = args[1], args[2], args[3]
    if now == nil then return redis.error_reply('BADARG conv agent now_ms expected') end
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'channel', 'locale', 'queue',
        'queued_at')
    if h[1] == 'closed' then return redis.error_reply('CLOSED conversation is closed') end
    if h[1] ~= 'assigned' or h[2] ~= agent then
        return redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    local info = agent_info(agent)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    if info.load > 0 then info.load = redis.call('HINCRBY', CG.KEY.agent(agent), 'load', -1) end
    avail_remove_all(info) -- while the queue is served: never back to this agent
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'prev_agent', agent, 'unresolved_at', now)
    redis.call('HDEL', CG.KEY.conv(conv), 'agent')
    redis.call('HINCRBY', CG.KEY.conv(conv), 'unresolved_n', 1)
    redis.call('ZREM', CG.KEY.timers(), 'idle:' .. conv)
    local c = {queue = h[5] or '', queued_at = h[6]}
    requeue(conv, c, c.queue, now)
    avail_refresh(info)
    local rows = {}
    if redis.call('HGET', CG.KEY.conv(conv), 'state') ~= 'queued' then rows = offer(info, now) end
    return {'requeued', h[3] or '', h[4] or '', c.queue, rows}
end

local function cg_after_close(keys, args)
    local conv, survey_until, due = args[1], tonumber(args[2]) or 0, tonumber(args[3]) or 0
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'ticket')
    if h[1] ~= 'closed' then return '' end
    redis.call('ZREM', CG.KEY.timers(), 'idle:' .. conv)
    if survey_until > 0 then
        redis.call('HSETNX', CG.KEY.conv(conv), 'survey_until', fmt(survey_until))
    end
    if due > 0 and h[2] then
        redis.call('ZADD', CG.KEY.timers(), 'NX', fmt(due), 'followup:' .. conv)
    end
    return h[2] or ''
end

local FOLLOWUP_COPY = {'customer', 'channel', 'locale', 'name', 'chat_id', 'chat_name',
    'subject', 'mail_root', 'mail_last'}

-- Queue the follow-up task of closed complaint conv as newconv in queue (see cg_close_fire).
local function followup_task(conv, newconv, queue, now)
    local ticket = redis.call('HGET', CG.KEY.conv(conv), 'ticket')
    if not ticket or newconv == '' or queue == '' then return {'done'} end
    if redis.call('EXISTS', CG.KEY.conv(newconv)) == 1 then return {'done'} end
    local v = redis.call('HMGET', CG.KEY.conv(conv), unpack(FOLLOWUP_COPY))
    local h = {'state', 'queued', 'created', now, 'seq', 0, 'queue', queue, 'prio', 9,
        'queued_at', now, 'category', 'followup', 'followup_of', conv, 'followup_ticket', ticket,
        'preview', 'Follow-up ' .. ticket}
    for i, f in ipairs(FOLLOWUP_COPY) do
        if v[i] then
            h[#h + 1] = f
            h[#h + 1] = v[i]
        end
    end
    redis.call('HSET', CG.KEY.conv(newconv), unpack(h))
    redis.call('HSET', CG.KEY.conv(conv), 'followup_conv', newconv)
    redis.call('ZADD', CG.KEY.queue(queue), fmt(tonumber(now) or 0), newconv)
    local n = 0
    if not is_held(queue) then n = serve_queue(queue, now) end
    return {'followup', newconv, queue, ticket, n}
end

local function cg_close_fire(keys, args)
    local member, lease, now = args[1], args[2], args[3]
    if now == nil then return redis.error_reply('BADARG member lease now_ms ...') end
    local score = redis.call('ZSCORE', CG.KEY.timers(), member)
    if not score or fmt(tonumber(score)) ~= lease then return {'stale'} end
    redis.call('ZREM', CG.KEY.timers(), member)
    local kind, conv = string.match(member, '^(%a+):(.+)$')
    if kind == 'followup' then return followup_task(conv, args[4] or '', args[5] or '', now) end
    if kind ~= 'idle' then return {'done'} end
    local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent')
    if c[1] ~= 'assigned' or not c[2] then return {'done'} end
    local r = cg_close(keys, {conv, c[2], 'no_response', now})
    return {'idle', conv, c[2], r[2], r[4], r[3]}
end

redis.register_function{function_name = 'cg_queuecfg', callback = cg_queuecfg}
redis.register_function{function_name = 'cg_enqueue', callback = cg_enqueue}
redis.register_function{function_name = 'cg_presence', callback = cg_presence}
redis.register_function{function_name = 'cg_status', callback = cg_status}
redis.register_function{function_name = 'cg_pick', callback = cg_pick}
redis.register_function{function_name = 'cg_close', callback = cg_close}
redis.register_function{function_name = 'cg_queue_list', callback = cg_queue_list,
    flags = {'no-writes'}}
redis.register_function{function_name = 'cg_conv_info', callback = cg_conv_info,
    flags = {'no-writes'}}
redis.register_function{function_name = 'cg_outbox_done', callback = cg_outbox_done}
redis.register_function{function_name = 'cg_outbox_list', callback = cg_outbox_list}
redis.register_function{function_name = 'cg_timer_claim', callback = cg_timer_claim}
redis.register_function{function_name = 'cg_timer_fire', callback = cg_timer_fire}
redis.register_function{function_name = 'cg_sla_customer', callback = cg_sla_customer}
redis.register_function{function_name = 'cg_sla_agent', callback = cg_sla_agent}
redis.register_function{function_name = 'cg_complaint', callback = cg_complaint}
redis.register_function{function_name = 'cg_reopen', callback = cg_reopen}
redis.register_function{function_name = 'cg_after_close', callback = cg_after_close}
redis.register_function{function_name = 'cg_close_fire', callback = cg_close_fire}

-- ---- routing: transfer, offer timeout, sticky agents, overflow (router/routing.c) --------------

--[[
FCALL cg_transfer 0 conv agent now_ms to_agent to_queue pos_ms
  The agent hands assigned conv to to_agent (who must be online with an open socket and free
  capacity) or, when to_agent is '', to to_queue (a configured queue): conv waits there at its
  priority and arrival (queued_at kept; pos:<conv> armed when pos_ms > 0 and not e-mail) and
  an open push queue is served without the old agent. The old agent's slot is freed (load - 1,
  prev_agent) and offered other waiting conversations (never this one); its offer:<conv> timer
  is dropped.
  -> {'transferred', channel, locale, queue, ROW of to_agent or {}, {ROW, ...} offered to agent}
  Errors: NOTASSIGNED, CLOSED, TRANSFERFAIL <reason>.
FCALL cg_offer_arm 0 conv assign_no due_ms
  The assignment assign_no of conv was announced: arm offer:<conv> at due_ms once per assignment
  (offer_no = assign_no). -> 1 armed, 0 not (stale assignment, or already armed).
FCALL cg_route_fire 0 member lease now_ms max_misses
  Fires a claimed offer:<conv> or overflow:<queue> timer once (the lease rule of cg_timer_fire).
  offer    -> conv still in the same assignment and unanswered: taken back from its agent (load
              - 1, prev_agent, offer_misses + 1; after max_misses (> 0) consecutive misses the
              agent's status becomes away and the count restarts), back in its queue at its
              priority and arrival, and the queue served without that agent.
              -> {'missed', conv, agent, misses, away 0|1, channel, queue, locale, assigned now}
  overflow -> the waiting conversations of queue past overflow_after_s: queue joins
              cg:overflowing and the available agents of its overflow queues get them (push
              queues; agents of those queues may also pick them, and see them in their queue
              lists); re-armed for the next deadline; no overdue conversation: the queue leaves
              cg:overflowing.  -> {'overflow', queue, assigned count, {overflow queues}}
  otherwise {'done'}, or {'stale'}.
]]

local function cg_transfer(keys, args)
    local conv, agent, now, to_agent, to_queue = args[1], args[2], args[3], args[4], args[5]
    local pos_ms = tonumber(args[6]) or 0
    if not to_queue or (to_agent == '' and to_queue == '') then
        return redis.error_reply('BADARG conv agent now_ms to_agent to_queue pos_ms expected')
    end
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'channel', 'locale', 'queue',
        'queued_at', 'prio')
    if h[1] == 'closed' then return redis.error_reply('CLOSED conversation is closed') end
    if h[1] ~= 'assigned' or h[2] ~= agent then
        return redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    local target
    if to_agent ~= '' then
        if to_agent == agent then
            return redis.error_reply('TRANSFERFAIL the conversation is already yours')
        end
        target = agent_info(to_agent)
        if target.status ~= 'online' or redis.call('SCARD', CG.KEY.agent_socks(to_agent)) == 0 then
            return redis.error_reply('TRANSFERFAIL agent ' .. to_agent .. ' is not online')
        end
        if target.load >= target.cap then
            return redis.error_reply('TRANSFERFAIL agent ' .. to_agent .. ' is at capacity')
        end
    elseif redis.call('SISMEMBER', CG.KEY.queues(), to_queue) == 0 then
        return redis.error_reply('TRANSFERFAIL there is no queue ' .. to_queue)
    end
    local info = agent_info(agent)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    redis.call('ZREM', CG.KEY.timers(), 'offer:' .. conv)
    if info.load > 0 then info.load = redis.call('HINCRBY', CG.KEY.agent(agent), 'load', -1) end
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'prev_agent', agent)
    redis.call('HDEL', CG.KEY.conv(conv), 'agent')
    local row = {}
    local queue = h[5] or ''
    avail_remove_all(info) -- while the conversation is placed: never back to this agent
    if target then
        row = assign(conv, target, now)
    else
        queue = to_queue
        local prio = tonumber(h[7]) or 5
        local at = tonumber(h[6]) or tonumber(now) or 0
        redis.call('HSET', CG.KEY.conv(conv), 'queue', queue)
        redis.call('ZADD', CG.KEY.queue(queue), fmt((9 - prio) * E13 + at), conv)
        if pos_ms > 0 and h[3] ~= 'email' then
            local due = fmt((tonumber(now) or 0) + pos_ms)
            redis.call('ZADD', CG.KEY.timers(), 'NX', due, 'pos:' .. conv)
        end
        overflow_arm(queue, conv)
        if not is_held(queue) then serve_queue(queue, now) end
        row = current_row(conv)
    end
    avail_refresh(info)
    -- the freed slot takes other waiting work, never this conversation straight back
    local waiting = redis.call('HGET', CG.KEY.conv(conv), 'state') == 'queued'
    if waiting then redis.call('ZREM', CG.KEY.queue(queue), conv) end
    local offered = offer(info, now)
    if waiting then
        local prio = tonumber(h[7]) or 5
        local at = tonumber(h[6]) or tonumber(now) or 0
        redis.call('ZADD', CG.KEY.queue(queue), fmt((9 - prio) * E13 + at), conv)
    end
    return {'transferred', h[3] or '', h[4] or '', queue, row, offered}
end

local function cg_offer_arm(keys, args)
    local conv, no, due = args[1], args[2], tonumber(args[3]) or 0
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'assign_no', 'offer_no', 'first_reply_at')
    if due <= 0 or h[1] ~= 'assigned' or h[2] ~= no or h[3] == no then return 0 end
    redis.call('HSET', CG.KEY.conv(conv), 'offer_no', no)
    redis.call('ZADD', CG.KEY.timers(), fmt(due), 'offer:' .. conv)
    return 1
end

-- offer:<conv> fired (see cg_route_fire).
local function offer_fire(conv, now, max_misses)
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'assign_no', 'offer_no', 'queue',
        'queued_at', 'prio', 'channel', 'locale')
    local agent, queue = h[2], h[5] or ''
    if h[1] ~= 'assigned' or not agent or h[3] ~= h[4] or queue == '' then return {'done'} end
    local info = agent_info(agent)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    if info.load > 0 then info.load = redis.call('HINCRBY', CG.KEY.agent(agent), 'load', -1) end
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'queued', 'prev_agent', agent)
    redis.call('HDEL', CG.KEY.conv(conv), 'agent')
    local misses = redis.call('HINCRBY', CG.KEY.agent(agent), 'offer_misses', 1)
    local away = 0
    if max_misses > 0 and misses >= max_misses then
        set_status(info, 'away', now)
        redis.call('HDEL', CG.KEY.agent(agent), 'offer_misses')
        away = 1
    end
    local prio = tonumber(h[7]) or 5
    local at = tonumber(h[6]) or now
    redis.call('ZADD', CG.KEY.queue(queue), fmt((9 - prio) * E13 + at), conv)
    avail_remove_all(info) -- the next agent, not this one
    local n = 0
    if not is_held(queue) then n = serve_queue(queue, fmt(now)) end
    avail_refresh(info)
    return {'missed', conv, agent, misses, away, h[8] or '', queue, h[9] or '', n}
end

-- overflow:<queue> fired (see cg_route_fire).
local function overflow_fire(queue, now)
    local cfg = overflow_cfg(queue)
    if not cfg then
        redis.call('SREM', CG.KEY.overflowing(), queue)
        return {'done'}
    end
    local overdue, next_due = 0, nil
    for _, conv in ipairs(redis.call('ZRANGE', CG.KEY.queue(queue), 0, MAX_SCAN - 1)) do
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'queued_at')
        local due = (tonumber(c[2]) or now) + cfg.after
        if c[1] ~= 'queued' then
            due = nil
        elseif due <= now then
            overdue = overdue + 1
        elseif next_due == nil or due < next_due then
            next_due = due
        end
    end
    if next_due then redis.call('ZADD', CG.KEY.timers(), 'LT', fmt(next_due), 'overflow:' .. queue) end
    if overdue == 0 then
        redis.call('SREM', CG.KEY.overflowing(), queue)
        return {'overflow', queue, 0, cfg.to}
    end
    redis.call('SADD', CG.KEY.overflowing(), queue)
    local n = 0
    if is_held(queue) then return {'overflow', queue, 0, cfg.to} end
    for _, oq in ipairs(cfg.to) do
        while not is_held(oq) do
            local conv = overflow_head(queue, cfg, now)
            local info = conv and best_agent(oq)
            if not info then break end
            assign(conv, info, fmt(now))
            n = n + 1
        end
    end
    return {'overflow', queue, n, cfg.to}
end

local function cg_route_fire(keys, args)
    local member, lease, now = args[1], args[2], tonumber(args[3])
    if not now then return redis.error_reply('BADARG member lease now_ms max_misses') end
    local score = redis.call('ZSCORE', CG.KEY.timers(), member)
    if not score or fmt(tonumber(score)) ~= lease then return {'stale'} end
    redis.call('ZREM', CG.KEY.timers(), member)
    local kind, id = string.match(member, '^(%a+):(.+)$')
    if kind == 'offer' then return offer_fire(id, now, tonumber(args[4]) or 0) end
    if kind == 'overflow' then return overflow_fire(id, now) end
    return {'done'}
end

redis.register_function{function_name = 'cg_transfer', callback = cg_transfer}
redis.register_function{function_name = 'cg_offer_arm', callback = cg_offer_arm}
redis.register_function{function_name = 'cg_route_fire', callback = cg_route_fire}

-- ---- bounded work streams (router/trim.c) --------------------------------------------------

--[[
FCALL cg_trim 0 stream group
  Drops the entries of stream that group is done with: those below its oldest pending entry, or,
  with nothing pending, those before its last delivered entry (XTRIM MINID, exact: the cost is
  the number of entries dropped). Entries not yet delivered or not yet acknowledged are never
  dropped. A stream without that group is left whole (nobody has
  read it yet). Only for streams with one consumer group (cg:in, cg:out:<channel>).
  -> number of entries dropped
]]

local function cg_trim(keys, args)
    local stream, group = args[1], args[2]
    if not group then return redis.error_reply('BADARG stream group expected') end
    if redis.call('TYPE', stream).ok ~= 'stream' then return 0 end
    local last
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local f = {}
        for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
        if f['name'] == group then last = f['last-delivered-id'] end
    end
    if not last or last == '0-0' then return 0 end
    local p = redis.call('XPENDING', stream, group)
    local minid = last
    if tonumber(p[1]) > 0 then minid = p[2] end
    return redis.call('XTRIM', stream, 'MINID', minid)
end

redis.register_function{function_name = 'cg_trim', callback = cg_trim}

-- ---- re-classification by an agent (router/reclass.c) -------------------------------------

--[[
FCALL cg_reclassify 0 conv agent category now_ms
  The agent assigned to conv sets its category (the router checked it is a configured one):
  prev_category keeps the one before, reclassified_by / reclassified_at who and when. The queue,
  priority and assignment do not change (a transfer moves a conversation).
  -> {old category, channel, locale, ticket or ''}
  Errors: NOTASSIGNED, CLOSED, CLASSIFYFAIL <reason> (already in that category).
]]

local function cg_reclassify(keys, args)
    local conv, agent, category, now = args[1], args[2], args[3], args[4]
    if not now or category == '' then
        return redis.error_reply('BADARG conv agent category now_ms expected')
    end
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'agent', 'category', 'channel', 'locale',
        'ticket')
    if h[1] == 'closed' then return redis.error_reply('CLOSED conversation is closed') end
    if h[1] ~= 'assigned' or h[2] ~= agent then
        return redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    local old = h[3] or ''
    if old == category then
        return redis.error_reply('CLASSIFYFAIL the conversation is already in category ' .. category)
    end
    redis.call('HSET', CG.KEY.conv(conv), 'category', category, 'prev_category', old, 'reclassified_by',
        agent, 'reclassified_at', now)
    return {old, h[4] or '', h[5] or '', h[6] or ''}
end

redis.register_function{function_name = 'cg_reclassify', callback = cg_reclassify}

-- ---- canned replies per queue (router/store.c, read by gateway/canned.c) ------------------

--[[
FCALL cg_canned_set 0 queue [name text] ...
  Replace the canned replies of queue (its [canned <queue>] section) in one step: DEL
  cg:canned:<queue>, then HSET it with the pairs given, so a reader (GET /canned, HGETALL) never
  sees it half-written. Without pairs the hash is just deleted. The router checked the names and
  texts; published with the queue configuration (start, reconnect, reload).
  -> number of replies stored
  Errors: BADARG.
]]

local function cg_canned_set(keys, args)
    local queue = args[1]
    if not queue or queue == '' or #args % 2 ~= 1 then
        return redis.error_reply('BADARG queue [name text] ... expected')
    end
    local key = CG.KEY.canned(queue)
    redis.call('DEL', key)
    if #args == 1 then return 0 end
    redis.call('HSET', key, unpack(args, 2))
    return (#args - 1) / 2
end

redis.register_function{function_name = 'cg_canned_set', callback = cg_canned_set}

-- ---- gateway liveness: the sockets of dead gateways (router/reap.c) ------------------------

--[[
FCALL cg_gw_reap 0 now_ms [limit]
  Gateways heartbeat (gateway/heartbeat.c): SET cg:gw:<gateway> <boot ms> PX <3 heartbeats> and
  SADD cg:gateways <gateway>. cg_presence indexes every agent socket in cg:gw:<gateway>:socks
  (sorted set, member "<sock> <agent>", score the boot cg:gw:<gateway> held at the connect).
  For each gateway of cg:gateways:
  - cg:gw:<gateway> is gone (killed, machine lost, or silent for three heartbeats): every socket
    of its index is dropped as its disconnect would drop it (out of cg:agent:<a>:socks, into
    :gone); once the index is empty the gateway leaves cg:gateways and cg:gw:<gateway>:reaped is
    set for 24 h, so that a connect of it processed later (a router behind) is ignored;
  - cg:gw:<gateway> holds another boot than a socket's score (the gateway restarted with the same
    id before its key expired): the sockets of the earlier run are dropped the same way.
  Each agent touched is then settled as after a disconnect: offline when no socket is left (out
  of every cg:avail and cg:online set, status_ts now_ms), online as before with a socket on
  another gateway, and offered waiting conversations while it can take some (announced through
  the outbox). Conversations assigned to it stay assigned: the agent gets them back on its next
  hello, through any gateway. At most `limit` sockets (default 1000) per call. Atomic and
  idempotent: any number of routers may call it.
  -> {{{gateway, sockets dropped, 'gone' | 'restarted', {agent, ...}}, ...}, assigned, more}
     (assigned: conversations offered to the agents touched; more 1: the limit was reached)
]]

local function cg_gw_reap(keys, args)
    local now, limit = tonumber(args[1]), tonumber(args[2]) or 1000
    if not now or limit < 1 then return redis.error_reply('BADARG now_ms [limit] expected') end
    local out, touched, order, left, more = {}, {}, {}, limit, 0
    for _, gw in ipairs(redis.call('SMEMBERS', CG.KEY.gateways())) do
        if left <= 0 then
            more = 1
            break
        end
        local idx = CG.KEY.gw_socks(gw)
        local boot = redis.call('GET', CG.KEY.gw(gw))
        local socks = {}
        if not boot then
            socks = redis.call('ZRANGE', idx, 0, left - 1)
        elseif tonumber(boot) then
            socks = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. boot, 'LIMIT', 0, left)
            for _, m in ipairs(redis.call('ZRANGEBYSCORE', idx, '(' .. boot, '+inf', 'LIMIT', 0,
                left)) do
                socks[#socks + 1] = m
            end
        end
        local n, agents, seen = 0, {}, {}
        for _, m in ipairs(socks) do
            if left <= 0 then break end
            left = left - 1
            redis.call('ZREM', idx, m)
            -- "<gateway>:<n> <agent>": the connection number has no space
            local sp = string.find(m, ' ', #gw + 2, true)
            if sp then
                local sock, agent = string.sub(m, 1, sp - 1), string.sub(m, sp + 1)
                sock_drop(agent, sock, now)
                n = n + 1
                if not seen[agent] then
                    seen[agent] = true
                    agents[#agents + 1] = agent
                end
                if not touched[agent] then
                    touched[agent] = true
                    order[#order + 1] = agent
                end
            end
        end
        if not boot then
            if redis.call('ZCARD', idx) == 0 then
                redis.call('SREM', CG.KEY.gateways(), gw)
                redis.call('SET', CG.KEY.gw_reaped(gw), fmt(now), 'PX', GONE_KEEP_MS)
            else
                more = 1
            end
        end
        if n > 0 or not boot then
            out[#out + 1] = {gw, n, boot and 'restarted' or 'gone', agents}
        end
    end
    local assigned = 0
    for _, agent in ipairs(order) do
        assigned = assigned + #offer(presence_settle(agent, now), now)
    end
    return {out, assigned, more}
end

redis.register_function{function_name = 'cg_gw_reap', callback = cg_gw_reap}

-- ---- the customer ends the conversation (router/agent.c, customer_on_close) ----------------

--[[
FCALL cg_customer_close 0 conv customer now_ms
  The customer ends conv (the widget's "End chat"). Waiting (state new or queued): it leaves its
  queue and is closed with resolution abandoned (closed_by customer, its timers dropped; counted
  as closed and abandoned for its queue). Assigned: closed as by its agent with resolution
  customer_left (cg_close: the agent's slot freed and offered other work; abandoned too when no
  agent message had answered the customer).
  -> {'abandoned', channel, locale, queue} | {'ended', channel, locale, queue, agent, {ROW, ...}}
     | {'already'} (closed before, not by its customer)
  Closed by its customer before (the same entry processed again: a router died after this call
  and before it told both sides): the same answer again, with no ROWs (those assignments are in
  the outbox), so the router does what it did not finish; everything it does is idempotent
  (deterministic cmids).
  Errors: NOTYOURS, BADARG.
]]

local function cg_customer_close(keys, args)
    local conv, customer, now = args[1], args[2], args[3]
    if not now then return redis.error_reply('BADARG conv customer now_ms expected') end
    local h = redis.call('HMGET', CG.KEY.conv(conv), 'state', 'customer', 'agent', 'queue', 'channel',
        'locale')
    if not h[2] or h[2] ~= customer then
        return redis.error_reply('NOTYOURS conversation is not yours')
    end
    local channel, locale, queue = h[5] or '', h[6] or '', h[4] or ''
    if h[1] == 'closed' then
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'closed_by', 'resolution')
        if c[1] ~= 'customer' then return {'already'} end
        if c[2] == 'abandoned' then return {'abandoned', channel, locale, queue} end
        return {'ended', channel, locale, queue, h[3] or '', {}}
    end
    if h[1] == 'assigned' and h[3] then
        local r = cg_close(keys, {conv, h[3], 'customer_left', now})
        redis.call('HSET', CG.KEY.conv(conv), 'closed_by', 'customer')
        return {'ended', channel, locale, queue, h[3], r[3]}
    end
    if queue ~= '' then redis.call('ZREM', CG.KEY.queue(queue), conv) end
    redis.call('HSET', CG.KEY.conv(conv), 'state', 'closed', 'closed_at', now, 'resolution', 'abandoned',
        'closed_by', 'customer')
    timers_drop(conv)
    kpi_add(queue, nil, {'closed', 1, 'abandoned', 1})
    return {'abandoned', channel, locale, queue}
end

redis.register_function{function_name = 'cg_customer_close', callback = cg_customer_close}
