-- redis/queue.lua -- queues: configuration, enqueue, lists, transfer (a
-- part of the chatgw library: redis/lib.lua).

--[[
FCALL cg_queuecfg 1 <tenant> now_ms [queue mode prio name_zh name_en overflow overflow_after_s closed
                              next_change] ...
  Replace the whole queue configuration (the router's [queue] sections): HSET cg:queuecfg:<queue>
  with the fields mode .. overflow_after_s for every queue given, SADD cg:queues; closed = 1 (the
  queue is outside its business hours) puts it in the set cg:closed (else it is removed); a
  next_change > 0 (ms) arms the timer hours:<queue> then (0 removes it). Queues of the previous
  configuration not given any more lose their cg:queuecfg (so they are push again) and their
  cg:canned hash. Then every open push queue with waiting conversations and available agents is
  served (a queue switched
  from pull to push, or just opened); those assignments are announced through the outbox
  (cg_outbox_announce, event.lua).
  -> number of conversations assigned.
  Errors: BADARG.
FCALL cg_enqueue 1 <tenant> conv queue prio now_ms [category] [locale] [pos_ms] [sticky_ms]
  Only from state new: state queued, queue, prio, category, queued_at, locale; ZADD
  cg:queue:<queue> with score (9-prio)*1e13+now_ms; then, in an open push queue, assigns the best
  available agent of cg:avail:<queue> at once. Left waiting with pos_ms > 0 (a chat channel): the
  position timer pos:<conv> is armed for now_ms + pos_ms.
  -> {'assigned', ROW} | {'queued', position, queue_length, avg_ms, held, staffed, slots, free}
     (slots, free: the serving capacity of the queue's online agents, assign.lua serving; held 1: a
     pull or closed queue; avg_ms: the queue's measured handling time, 0 when none; staffed 0:
     no agent of the queue, nor of a queue it overflows into, is online: counted as no_agent in
     cg:kpi:queue:<queue>)
   | {'already', state, ROW or {}}   (state was not new: nothing changed; ROW when assigned)
  Errors: NOCONV.
FCALL cg_queue_list 1 <tenant> queue limit
  -> {{conv, position, queued_at, channel, prio, preview}, ...} the first `limit` waiting.
FCALL_RO cg_kpi_pending 1 <tenant>
  The response times the conversations of cg:kpi:pending hold (their field rt, redis/desk.lua
  rt_add), added up per queue and per agent: what /metrics adds to response_ms/_n of
  cg:kpi:queue:<queue> and cg:kpi:agent:<agent> so that they are live.
  -> {{'queue', name, ms, n}, ..., {'agent', name, ms, n}, ...} (no queue or agent twice)
cg_conv_info(keys, {conv})   inside the library (cg_customer_msg's 'info'), read only
  -> {state, channel, queue, position, in_outbox, ROW or {}, avg_ms, locale, held, staffed, slots,
      free} (slots, free: as cg_enqueue's, while queued)
  state '' when it does not exist; position 0 unless queued; staffed as cg_enqueue's.
cg_transfer(keys, {conv, agent, now_ms, to_agent, to_queue, pos_ms})   inside the library
  (cg_agent_transfer)
  The agent hands assigned conv to to_agent (who must be online with an open socket and free
  capacity) or, when to_agent is '', to to_queue (a configured queue): conv waits there at its
  priority and arrival (queued_at kept; pos:<conv> armed when pos_ms > 0 and not e-mail) and
  an open push queue is served without the old agent. The old agent's slot is freed (load - 1,
  prev_agent) and offered other waiting conversations (never this one); its offer:<conv> timer
  is dropped.
  -> {'transferred', channel, locale, queue, ROW of to_agent or {}, {ROW, ...} offered to agent}
  Errors: NOTASSIGNED, CLOSED, TRANSFERFAIL <reason>.
]]

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
    if not held then
        info = sticky_agent(conv, queue, now, sticky_ms) or best_agent(queue, conv_weight(conv))
    end
    if info then return {'assigned', assign(conv, info, now)} end
    overflow_arm(queue, conv)
    local rank = redis.call('ZRANK', CG.KEY.queue(queue), conv)
    local ok = staffed(queue)
    if pos_ms > 0 then -- pos_last: the position the customer was told (0: nobody is online)
        redis.call('HSET', CG.KEY.conv(conv), 'pos_last', ok and rank + 1 or 0, 'pos_at', now)
        redis.call('ZADD', CG.KEY.timers(), 'NX', fmt((tonumber(now) or 0) + pos_ms), 'pos:' .. conv)
    end
    if not ok then redis.call('HINCRBY', CG.KEY.kpi_queue(queue), 'no_agent', 1) end
    local slots, free = serving(queue)
    return {'queued', rank + 1, redis.call('ZCARD', CG.KEY.queue(queue)), avg_ms(queue),
        held and 1 or 0, ok and 1 or 0, slots, free}
end


--[[
FCALL cg_deskcfg 1 <tenant> [field value] ...
  Replace the desk's timings (the router's, router/store.c): DEL cg:deskcfg, HSET the pairs given,
  and forget what this Lua state remembered of them (desk_timings, redis/desk.lua).  -> 1
  Errors: BADARG (an odd count).
]]
local function cg_deskcfg(keys, args)
    if #args % 2 ~= 0 then return redis.error_reply('BADARG field value pairs expected') end
    local k = CG.KEY.deskcfg()
    redis.call('DEL', k)
    if #args > 0 then redis.call('HSET', k, unpack(args)) end
    deskcfg_memo[k] = nil
    return 1
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
        local c = redis.call('HMGET', CG.KEY.conv(conv), 'queued_at', 'channel', 'prio', 'preview',
            'ring')
        out[#out + 1] = {conv, i, tonumber(c[1]) or 0, c[2] or '', tonumber(c[3]) or 0, c[4] or '',
            tonumber(c[5]) or 0}
    end
    overflow_list(queue, out, limit)
    escalated_list(queue, out, limit)
    return out
end

local function cg_kpi_pending(keys, args)
    local sums, order = {}, {}
    local function add(kind, name, ms, n)
        if name == '' then return end
        local k = kind .. '\t' .. name
        local s = sums[k]
        if not s then
            s = {kind, name, 0, 0}
            sums[k] = s
            order[#order + 1] = s
        end
        s[3], s[4] = s[3] + ms, s[4] + n
    end
    for _, conv in ipairs(redis.call('SMEMBERS', CG.KEY.kpi_pending())) do
        local q, a, ms, n = rt_parse(redis.call('HGET', CG.KEY.conv(conv), 'rt'))
        if q then
            add('queue', q, ms, n)
            add('agent', a, ms, n)
        end
    end
    return order
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
    local slots, free = 0, 0
    if pos > 0 then slots, free = serving(q) end
    return {c[1], c[2] or '', q, pos, outbox, current_row(conv), q ~= '' and avg_ms(q) or 0,
        c[4] or '', (q ~= '' and is_held(q)) and 1 or 0, (q == '' or staffed(q)) and 1 or 0,
        slots, free}
end

local function cg_transfer(keys, args)
    local conv, agent, now, to_agent, to_queue = args[1], args[2], args[3], args[4], args[5]
    local pos_ms = tonumber(args[6]) or 0
    if not to_queue or (to_agent == '' and to_queue == '') then
        return redis.error_reply('BADARG conv agent now_ms to_agent to_queue pos_ms expected')
    end
    local h, err = conv_assigned_to(conv, agent, 'channel', 'locale', 'queue', 'queued_at', 'prio')
    if not h then return err end
    local target
    if to_agent ~= '' then
        if to_agent == agent then
            return redis.error_reply('TRANSFERFAIL the conversation is already yours')
        end
        target = agent_info(to_agent)
        if target.status ~= 'online' or redis.call('SCARD', CG.KEY.agent_socks(to_agent)) == 0 then
            return redis.error_reply('TRANSFERFAIL agent ' .. to_agent .. ' is not online')
        end
        if not fits(target, conv_weight(conv)) then
            return redis.error_reply('TRANSFERFAIL agent ' .. to_agent .. ' is at capacity')
        end
    elseif redis.call('SISMEMBER', CG.KEY.queues(), to_queue) == 0 then
        return redis.error_reply('TRANSFERFAIL there is no queue ' .. to_queue)
    end
    local info = agent_info(agent)
    redis.call('SREM', CG.KEY.agent_convs(agent), conv)
    redis.call('SREM', CG.KEY.outbox_assign(), conv)
    redis.call('ZREM', CG.KEY.timers(), 'offer:' .. conv)
    load_release(info, conv)
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


-- ---- re-classification by an agent (router/reclass.c) -------------------------------------

--[[
cg_reclassify(keys, {conv, agent, category, now_ms})   inside the library (cg_agent_classify)
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
    local h, err = conv_assigned_to(conv, agent, 'category', 'channel', 'locale', 'ticket')
    if not h then return err end
    local old = h[3] or ''
    if old == category then
        return redis.error_reply('CLASSIFYFAIL the conversation is already in category ' .. category)
    end
    redis.call('HSET', CG.KEY.conv(conv), 'category', category, 'prev_category', old, 'reclassified_by',
        agent, 'reclassified_at', now)
    return {old, h[4] or '', h[5] or '', h[6] or ''}
end


-- ---- canned replies per queue (router/store.c, read by gateway/canned.c) ------------------

--[[
FCALL cg_canned_set 1 <tenant> queue [name text] ...
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


redis.register_function{function_name = 'cg_queuecfg', callback = cg_queuecfg}
redis.register_function{function_name = 'cg_deskcfg', callback = cg_deskcfg}
redis.register_function{function_name = 'cg_enqueue', callback = cg_enqueue}
redis.register_function{function_name = 'cg_queue_list', callback = cg_queue_list,
    flags = {'no-writes'}}
redis.register_function{function_name = 'cg_kpi_pending', callback = cg_kpi_pending,
    flags = {'no-writes'}}
redis.register_function{function_name = 'cg_canned_set', callback = cg_canned_set}
