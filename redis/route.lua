#!lua name=chatgw_route
--[[
chatgw_route -- queues, agents and assignment (docs/architecture.md, "Redis keys").
Loaded by the router on every connect with FUNCTION LOAD REPLACE. Every function is atomic, so any
number of routers may call them concurrently: a conversation is assigned at most once, an agent
never above its cap, and never while it is not online with an open socket.

An assignment ROW, returned wherever conversations get assigned, is
  {conv, agent, agent_name, queue, assign_no, channel}
Every assignment also SADDs conv to cg:outbox:assign; the router removes it (cg_outbox_done) once
it has logged the `assigned` event and published it on cg:a:<agent>.

Queue modes: a queue is push unless cg:queuecfg:<queue> says mode pull. Push queues assign the
best available agent at once (enqueue, agent online, a slot freed); conversations of a pull queue
wait until an agent picks them (cg_pick), they are never assigned by these functions otherwise.

FCALL cg_queuecfg 0 now_ms [queue mode prio name_zh name_en overflow overflow_after_s] ...
  Replace the whole queue configuration (the router's [queue] sections): HSET cg:queuecfg:<queue>
  with those fields for every queue given, SADD cg:queues; queues of the previous configuration
  not given any more lose their cg:queuecfg (so they are push again). Then every push queue with
  waiting conversations and available agents is served (a queue switched from pull to push);
  those assignments are announced through the outbox.  -> number of conversations assigned.
  Errors: BADARG.
FCALL cg_enqueue 0 conv queue prio now_ms [category]
  Only from state new: state queued, queue, prio, category, queued_at; ZADD cg:queue:<queue>
  with score (9-prio)*1e13+now_ms; then, in a push queue, assigns the best available agent of
  cg:avail:<queue> at once.
  -> {'assigned', ROW} | {'queued', position, queue_length}
   | {'already', state, ROW or {}}   (state was not new: nothing changed; ROW when assigned)
  Errors: NOCONV.
FCALL cg_presence 0 agent sock up name cap skills_csv now_ms [ts_ms]
  up 1: SADD the socket, store name/cap/skills (empty name/cap keep the old ones); up 0: SREM it
  and remember it in cg:agent:<a>:gone (24 h), so that a connect processed after its own
  disconnect (two routers) is ignored. Sockets present and status offline/absent -> online; no
  socket -> offline (out of every avail). ts_ms (the event's time, default now_ms) is recorded
  as status_ts with the status. Then, when online with free capacity, offers it the best waiting
  conversations of its skills (push queues only).  -> {ROW, ...} the conversations assigned now
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
  -> {'closed', channel, {ROW, ...}}, or {'already', channel, {}} when this agent had already
  closed it (a re-processed command).   Errors: NOTASSIGNED, CLOSED (closed by another agent).
FCALL cg_queue_list 0 queue limit
  -> {{conv, position, queued_at, channel, prio, preview}, ...} the first `limit` waiting.
FCALL cg_conv_info 0 conv           (read only)
  -> {state, channel, queue, position, in_outbox, ROW or {}}   state '' when it does not exist;
  position 0 unless queued.
FCALL cg_outbox_done 0 conv         -> 1 if it was in the outbox, else 0
FCALL cg_outbox_list 0 limit
  -> {ROW, ...} for up to `limit` outbox conversations still assigned (others are dropped).
]]

local E13 = 1e13

local function ckey(conv) return 'cg:conv:' .. conv end
local function akey(agent) return 'cg:agent:' .. agent end
local function fmt(n) return string.format('%.0f', n) end

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
    local h = redis.call('HMGET', akey(agent), 'status', 'load', 'cap', 'skills', 'last_assign',
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
    return redis.call('SCARD', akey(info.id) .. ':socks') > 0
end

-- Put the agent in (or take it out of) cg:avail:<skill> for every skill.
local function avail_refresh(info)
    local ok = can_take(info)
    local score = fmt(info.load * E13 + info.last)
    for _, s in ipairs(info.skills) do
        if ok then
            redis.call('ZADD', 'cg:avail:' .. s, score, info.id)
        else
            redis.call('ZREM', 'cg:avail:' .. s, info.id)
        end
    end
end

local function avail_remove_all(info)
    for _, s in ipairs(info.skills) do redis.call('ZREM', 'cg:avail:' .. s, info.id) end
end

-- Assign queued conv to the agent. Returns the assignment ROW.
local function assign(conv, info, now)
    local c = redis.call('HMGET', ckey(conv), 'queue', 'channel')
    local queue = c[1] or ''
    if queue ~= '' then redis.call('ZREM', 'cg:queue:' .. queue, conv) end
    redis.call('HSET', ckey(conv), 'state', 'assigned', 'agent', info.id, 'assigned_at', now)
    local no = redis.call('HINCRBY', ckey(conv), 'assign_no', 1)
    redis.call('SADD', akey(info.id) .. ':convs', conv)
    info.load = redis.call('HINCRBY', akey(info.id), 'load', 1)
    info.last = tonumber(now) or 0
    redis.call('HSET', akey(info.id), 'last_assign', now)
    avail_refresh(info)
    redis.call('SADD', 'cg:outbox:assign', conv)
    return {conv, info.id, info.name, queue, no, c[2] or ''}
end

-- True when the queue's conversations wait to be picked (never assigned automatically).
local function is_pull(queue)
    return redis.call('HGET', 'cg:queuecfg:' .. queue, 'mode') == 'pull'
end

-- The best available agent for queue, dropping stale avail entries. nil when none.
local function best_agent(queue)
    while true do
        local r = redis.call('ZRANGE', 'cg:avail:' .. queue, 0, 0)
        if #r == 0 then return nil end
        local info = agent_info(r[1])
        if can_take(info) and has(info.skills, queue) then return info end
        redis.call('ZREM', 'cg:avail:' .. queue, r[1])
    end
end

-- While the agent can take more, assign it the best waiting conversation across its skills
-- (push queues only). Returns the list of ROWs.
local function offer(info, now)
    local out = {}
    local push = {}
    for _, s in ipairs(info.skills) do
        if not is_pull(s) then push[#push + 1] = s end
    end
    while can_take(info) do
        local best, best_score, best_q
        for _, s in ipairs(push) do
            local r = redis.call('ZRANGE', 'cg:queue:' .. s, 0, 0, 'WITHSCORES')
            if #r > 0 and (best == nil or tonumber(r[2]) < best_score) then
                best, best_score, best_q = r[1], tonumber(r[2]), s
            end
        end
        if not best then break end
        if redis.call('HGET', ckey(best), 'state') == 'queued' then
            out[#out + 1] = assign(best, info, now)
        else
            redis.call('ZREM', 'cg:queue:' .. best_q, best)
        end
    end
    return out
end

-- The ROW of the current assignment of conv, or {} when it is not assigned.
local function current_row(conv)
    local c = redis.call('HMGET', ckey(conv), 'state', 'agent', 'queue', 'assign_no', 'channel')
    if c[1] ~= 'assigned' or not c[2] then return {} end
    local name = redis.call('HGET', akey(c[2]), 'name')
    if not name or name == '' then name = c[2] end
    return {conv, c[2], name, c[3] or '', tonumber(c[4]) or 0, c[5] or ''}
end

local function cg_enqueue(keys, args)
    local conv, queue, prio, now = args[1], args[2], tonumber(args[3]) or 5, args[4]
    local category = args[5] or ''

    if queue == nil or queue == '' or now == nil then
        return redis.error_reply('BADARG conv queue prio now_ms expected')
    end
    local state = redis.call('HGET', ckey(conv), 'state')
    if not state then return redis.error_reply('NOCONV no such conversation') end
    if state ~= 'new' then return {'already', state, current_row(conv)} end
    if prio < 0 then prio = 0 end
    if prio > 9 then prio = 9 end
    prio = math.floor(prio)
    redis.call('HSET', ckey(conv), 'state', 'queued', 'queue', queue, 'prio', prio, 'queued_at',
        now, 'category', category)
    redis.call('ZADD', 'cg:queue:' .. queue, fmt((9 - prio) * E13 + (tonumber(now) or 0)), conv)
    local info = nil
    if not is_pull(queue) then info = best_agent(queue) end
    if info then return {'assigned', assign(conv, info, now)} end
    local rank = redis.call('ZRANK', 'cg:queue:' .. queue, conv)
    return {'queued', rank + 1, redis.call('ZCARD', 'cg:queue:' .. queue)}
end

local GONE_KEEP_MS = 86400000

-- Set the agent's status from an event of time ts (ms), as its newest known status.
local function set_status(info, status, ts)
    redis.call('HSET', akey(info.id), 'status', status, 'status_ts', fmt(ts))
    info.status = status
end

local function cg_presence(keys, args)
    local agent, sock, up, name, cap, skills, now, ts = unpack(args)
    if now == nil or agent == '' then
        return redis.error_reply('BADARG agent sock up name cap skills_csv now_ms expected')
    end
    ts = tonumber(ts) or tonumber(now) or 0
    local k = akey(agent)
    if up == '1' then
        -- its disconnect was processed first (another router): the socket is already gone
        if redis.call('ZSCORE', k .. ':gone', sock) then return {} end
        redis.call('SADD', k .. ':socks', sock)
        local old = agent_info(agent)
        avail_remove_all(old)
        redis.call('HSET', k, 'skills', skills)
        if name ~= '' then redis.call('HSET', k, 'name', name) end
        if cap ~= '' then redis.call('HSET', k, 'cap', tonumber(cap) or 1) end
        redis.call('HSETNX', k, 'load', 0)
    else
        redis.call('SREM', k .. ':socks', sock)
        redis.call('ZADD', k .. ':gone', fmt(ts), sock)
        redis.call('ZREMRANGEBYSCORE', k .. ':gone', '-inf', fmt(ts - GONE_KEEP_MS))
        redis.call('PEXPIRE', k .. ':gone', GONE_KEEP_MS)
    end
    local info = agent_info(agent)
    local n = redis.call('SCARD', k .. ':socks')
    if n > 0 and info.status == 'offline' then
        set_status(info, 'online', ts)
    elseif n == 0 and redis.call('HGET', k, 'status') ~= 'offline' then
        set_status(info, 'offline', ts)
    end
    avail_refresh(info)
    return offer(info, now)
end

local function cg_status(keys, args)
    local agent, status, now = args[1], args[2], args[3]
    local ts = tonumber(args[4]) or tonumber(now) or 0
    if status ~= 'online' and status ~= 'away' then
        return redis.error_reply('BADARG status must be online or away')
    end
    local k = akey(agent)
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
    local c = redis.call('HMGET', ckey(conv), 'state', 'queue')
    if c[1] ~= 'queued' then
        return redis.error_reply('PICKFAIL conversation is not waiting in a queue')
    end
    local info = agent_info(agent)
    if not has(info.skills, c[2]) then
        return redis.error_reply('PICKFAIL conversation is not in one of your queues')
    end
    if redis.call('SCARD', akey(agent) .. ':socks') == 0 then
        return redis.error_reply('PICKFAIL you are not connected')
    end
    if info.load >= info.cap then return redis.error_reply('PICKFAIL you are at capacity') end
    return {'assigned', c[2], assign(conv, info, now)}
end

local function cg_close(keys, args)
    local conv, agent, resolution, now = args[1], args[2], args[3], args[4]
    if now == nil then return redis.error_reply('BADARG conv agent resolution now_ms expected') end
    local c = redis.call('HMGET', ckey(conv), 'state', 'agent', 'channel')
    if c[1] == 'closed' then
        if c[2] == agent then return {'already', c[3] or '', {}} end
        return redis.error_reply('CLOSED conversation is closed')
    end
    if c[1] ~= 'assigned' or c[2] ~= agent then
        return redis.error_reply('NOTASSIGNED conversation is not assigned to you')
    end
    if resolution == '' then resolution = 'resolved' end
    redis.call('HSET', ckey(conv), 'state', 'closed', 'closed_at', now, 'resolution', resolution)
    redis.call('SREM', akey(agent) .. ':convs', conv)
    redis.call('SREM', 'cg:outbox:assign', conv)
    local info = agent_info(agent)
    if info.load > 0 then info.load = redis.call('HINCRBY', akey(agent), 'load', -1) end
    avail_refresh(info)
    return {'closed', c[3] or '', offer(info, now)}
end

-- Assign the waiting conversations of push queue to its available agents, best first.
-- Returns the number assigned.
local function serve_queue(queue, now)
    local n = 0
    while true do
        local head = redis.call('ZRANGE', 'cg:queue:' .. queue, 0, 0)
        if #head == 0 then return n end
        local info = best_agent(queue)
        if not info then return n end
        if redis.call('HGET', ckey(head[1]), 'state') == 'queued' then
            assign(head[1], info, now)
            n = n + 1
        else
            redis.call('ZREM', 'cg:queue:' .. queue, head[1])
        end
    end
end

local QCFG_FIELDS = {'mode', 'prio', 'name_zh', 'name_en', 'overflow', 'overflow_after_s'}

local function cg_queuecfg(keys, args)
    local per = #QCFG_FIELDS + 1
    local now = args[1]
    if now == nil or (#args - 1) % per ~= 0 then
        return redis.error_reply('BADARG now_ms [queue mode prio name_zh name_en overflow after] ...')
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
    for _, q in ipairs(redis.call('SMEMBERS', 'cg:queues')) do
        if not given[q] then
            redis.call('DEL', 'cg:queuecfg:' .. q)
            redis.call('SREM', 'cg:queues', q)
            touched[#touched + 1] = q
        end
    end
    for q, i in pairs(given) do
        local h = {}
        for k, f in ipairs(QCFG_FIELDS) do
            h[#h + 1] = f
            h[#h + 1] = args[i + k]
        end
        redis.call('DEL', 'cg:queuecfg:' .. q)
        redis.call('HSET', 'cg:queuecfg:' .. q, unpack(h))
        redis.call('SADD', 'cg:queues', q)
    end
    local n = 0
    for _, q in ipairs(touched) do
        if not is_pull(q) then n = n + serve_queue(q, now) end
    end
    return n
end

local function cg_queue_list(keys, args)
    local queue, limit = args[1], tonumber(args[2]) or 50
    if limit < 1 then return {} end
    local convs = redis.call('ZRANGE', 'cg:queue:' .. queue, 0, limit - 1)
    local out = {}
    for i, conv in ipairs(convs) do
        local c = redis.call('HMGET', ckey(conv), 'queued_at', 'channel', 'prio', 'preview')
        out[#out + 1] = {conv, i, tonumber(c[1]) or 0, c[2] or '', tonumber(c[3]) or 0, c[4] or ''}
    end
    return out
end

local function cg_conv_info(keys, args)
    local conv = args[1]
    local c = redis.call('HMGET', ckey(conv), 'state', 'channel', 'queue')
    if not c[1] then return {'', '', '', 0, 0, {}} end
    local pos = 0
    if c[1] == 'queued' and c[3] then
        local rank = redis.call('ZRANK', 'cg:queue:' .. c[3], conv)
        if rank then pos = rank + 1 end
    end
    local outbox = redis.call('SISMEMBER', 'cg:outbox:assign', conv)
    return {c[1], c[2] or '', c[3] or '', pos, outbox, current_row(conv)}
end

local function cg_outbox_done(keys, args)
    return redis.call('SREM', 'cg:outbox:assign', args[1])
end

local function cg_outbox_list(keys, args)
    local limit = tonumber(args[1]) or 100
    local out = {}
    for _, conv in ipairs(redis.call('SRANDMEMBER', 'cg:outbox:assign', limit)) do
        local row = current_row(conv)
        if #row == 0 then
            redis.call('SREM', 'cg:outbox:assign', conv)
        else
            out[#out + 1] = row
        end
    end
    return out
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
