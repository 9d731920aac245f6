-- redis/agent.lua -- agents and presence: sockets, status, pick, dead gateways (a part of the
-- chatgw library: redis/lib.lua).

--[[
FCALL cg_presence 1 <tenant> agent sock up name cap skills_csv now_ms [ts_ms] [status]
  up 1: SADD the socket, store name/cap/skills (empty name/cap keep the old ones); up 0: SREM it
  and remember it in cg:agent:<a>:gone (24 h), so that a connect processed after its own
  disconnect (two routers) is ignored. Sockets present and status offline/absent -> online; no
  socket -> offline (out of every avail). ts_ms (the event's time, default now_ms) is recorded
  as status_ts with the status. Then, when online with free capacity, offers it the best waiting
  conversations of its skills (push queues only).  -> {ROW, ...} the conversations assigned now
  The socket "<gateway>:<n>" is also kept in its gateway's index cg:gw:<gateway>:socks (see
  cg_gw_reap); a connect of a gateway reaped as dead (cg:gw:<gateway>:reaped, no liveness key)
  is ignored.
  status (up 1 only): the status the agent chose in its hello, online or away ('' = none): set
  with the socket, in the same step, unless a newer status is known (status_ts), so an agent
  that connects away is never offered anything in between, with any number of routers.
FCALL cg_status 1 <tenant> agent status now_ms [ts_ms]
  status online | away, ignored when older than status_ts (events processed out of order by
  different routers). away: out of every avail. online: back in avail when a socket is open,
  then offered waiting conversations. The status is kept even with no socket (an `away` processed
  before its connect stays away).  -> {ROW, ...}     Errors: BADARG.
FCALL cg_pick 1 <tenant> conv agent now_ms
  (push or pull queue) conv must be queued in one of the agent's skills; the agent connected (online, or away: an
  away agent gets nothing pushed but may still pull) with free capacity.
  -> {'assigned', queue, ROW}   Errors: PICKFAIL <reason>.
]]

local GONE_KEEP_MS = 86400000

-- Set the agent's status from an event of time ts (ms), as its newest known status.
local function set_status(info, status, ts)
    serving_memo = {} -- the queues' serving capacity changes with it
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
    local agent, sock, up, name, cap, skills, now, ts, chosen = unpack(args)
    if now == nil or agent == '' then
        return redis.error_reply('BADARG agent sock up name cap skills_csv now_ms expected')
    end
    if chosen and chosen ~= '' and chosen ~= 'online' and chosen ~= 'away' then
        return redis.error_reply('BADARG status must be online or away')
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
        if chosen and chosen ~= '' and ts >= (tonumber(redis.call('HGET', k, 'status_ts')) or 0) then
            set_status(old, chosen, ts)
        end
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
    if not fits(info, conv_weight(conv)) then
        return redis.error_reply('PICKFAIL you are at capacity')
    end
    return {'assigned', c[2], assign(conv, info, now)}
end


-- ---- gateway liveness: the sockets of dead gateways (router/reap.c) ------------------------

--[[
FCALL cg_gw_reap 1 <tenant> <map: now [, limit]>
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
  -> 'reaped' gateways ({'gone' | 'restarted' gateway, dropped (sockets), agents ({agent, ...}),
     ...}: one named answer per gateway reaped), assigned (conversations offered to the agents
     touched), more (1: the limit was reached)
  Positional arguments (now_ms [limit]), as the routers of the releases before VERSION 42 call
  it in a rolling upgrade, get their answer: {{{gateway, dropped, 'gone' | 'restarted',
  {agent, ...}}, ...}, assigned, more}.
]]

local function cg_gw_reap(keys, args)
    local a, named = map_or_args(args, {'now', 'limit'})
    local now, limit = tonumber(a.now), tonumber(a.limit) or 1000
    if not now or limit < 1 then return redis.error_reply('BADARG now [and limit] expected') end
    local out, old, touched, order, left, more = {}, {}, {}, {}, limit, 0
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
            out[#out + 1] = answer(boot and 'restarted' or 'gone',
                {gateway = gw, dropped = n, agents = agents})
            old[#old + 1] = {gw, n, boot and 'restarted' or 'gone', agents}
        end
    end
    local assigned = 0
    for _, agent in ipairs(order) do
        assigned = assigned + #offer(presence_settle(agent, now), now)
    end
    if not named then return {old, assigned, more} end -- positional: before VERSION 42
    return answer('reaped', {gateways = out, assigned = assigned, more = more})
end


redis.register_function{function_name = 'cg_presence', callback = cg_presence}
redis.register_function{function_name = 'cg_status', callback = cg_status}
redis.register_function{function_name = 'cg_pick', callback = cg_pick}
redis.register_function{function_name = 'cg_gw_reap', callback = cg_gw_reap}
