-- redis/complaint.lua -- complaints and their follow-up tasks (a part of the chatgw library:
-- redis/lib.lua).

--[[
cg_complaint(keys, {conv, yyyymmdd, now_ms, respond_due, resolve_due, class [, limit, window_s]})
  inside the library (cg_customer_msg, cg_agent_classify)
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


local FOLLOWUP_COPY = {'customer', 'channel', 'locale', 'name', 'chat_id', 'chat_name',
    'subject', 'mail_root', 'mail_last'}

-- Queue the follow-up task of closed complaint conv as newconv in queue (see cg_close_fire).
local function followup_task(conv, newconv, queue, now)
    local ticket = redis.call('HGET', CG.KEY.conv(conv), 'ticket')
    if not ticket or newconv == '' or queue == '' then return {'done'} end
    if redis.call('EXISTS', CG.KEY.conv(newconv)) == 1 then return {'done'} end
    local v = redis.call('HMGET', CG.KEY.conv(conv), unpack(FOLLOWUP_COPY))
    local h = {'state', 'queued', 'created', now, 'seq', 0, 'ep', run_name(), 'queue', queue, 'prio', 9,
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
    if v[1] then cust_convs_add(v[1], newconv, now) end
    redis.call('ZADD', CG.KEY.queue(queue), fmt(tonumber(now) or 0), newconv)
    local n = 0
    if not is_held(queue) then n = serve_queue(queue, now) end
    return {'followup', newconv, queue, ticket, n}
end

