/* agent_i18n.js -- the agent console's own texts in zh-CN and en (window.AgentI18n).
 *
 * The language is the agent's choice kept in localStorage (chatgw_agent_locale), else the
 * browser's (navigator.languages: an English one gives en), else zh-CN. t(key, vars) returns the
 * text of the current language with {name} placeholders filled from vars (a missing key falls back
 * to en, then to the key itself). Static texts of agent.html carry data-i18n (textContent),
 * data-i18n-placeholder, data-i18n-title or data-i18n-aria (aria-label); apply() sets them. Texts
 * that come from the desk (customer messages, router texts) are never translated here. */
(function (global) {
    'use strict';
    var KEY = 'chatgw_agent_locale';
    var LOCALES = ['zh-CN', 'en'];

    var T = {
        en: {
            page_title: 'Agent console — chatgw', brand_sub: 'agent console', language: 'Language',
            conn_offline: 'Offline', conn_connecting: 'Connecting…', conn_online: 'Connected',
            conn_retry: 'Offline · retry in {s} s',
            status_online: 'Online', status_away: 'Away · Go online',
            status_online_title: 'You receive new conversations. Click to go away.',
            status_away_title: 'You receive no new conversations. Click to go online.',
            sign_out: 'Sign out', sign_in: 'Sign in',
            sign_in_text: 'Paste the agent token your desk administrator gave you (made with chatgw-token). It is kept only in this browser tab.',
            token_label: 'Agent token', connect: 'Connect', paste_first: 'Paste a token first.',
            token_refused: 'The gateway refused this token', paste_valid: 'Paste a valid agent token.',
            waiting: 'Waiting', my_convs: 'My conversations', no_convs: 'No conversations assigned to you yet.',
            no_selected: 'No conversation selected',
            pick_hint: 'Pick a waiting customer or select one of your conversations.',
            pick: 'Pick', picking: 'Picking…', no_one_waiting: 'No one waiting', no_queue_info: 'No queue information yet.',
            no_text: '(no text yet)', prio_title: 'Priority (0-9, higher is served first)', prio: 'prio {n}',
            wait_title: 'Waiting time', customer_n: 'Customer {id}', typing: 'typing…',
            is_typing: '{name} is typing…', the_customer: 'The customer', remove: 'Remove from the list',
            you_prefix: 'You: ', attachment: '[attachment]',
            chip_closed: 'closed', chip_transferred: 'transferred', sub_assigned: 'assigned to you',
            sub_queue: 'queue {q}', sub_order: 'order {v}', sub_account: 'account {v}', sub_tier: 'tier {v}',
            sub_category: 'category {v}', sub_conv: 'conv {v}',
            end_chat: 'End chat', ending: 'Ending…',
            close_title: 'End this conversation?', close_resolution: 'Resolution', close_confirm: 'End chat',
            cancel: 'Cancel', close_unresolved_hint: 'The conversation goes back to its queue for another agent.',
            close_hint: 'The customer sees that the conversation has ended.',
            transfer: 'Transfer', transferring: 'Transferring…', to_agent: 'Agent', to_queue: 'Queue',
            transfer_to: 'Transfer to', choose: 'Choose…', no_agents: 'No other agent online',
            no_queues: 'No queue known yet', agent_option: '{name} · {load}/{cap}', agent_away: ' · away',
            queue_option: '{name} · {online} online', note_label: 'Note for the next agent',
            note_hint: '(optional, never shown to the customer)', note_placeholder: 'What they should know',
            transfer_refused: 'Transfer refused: ', choose_agent: 'Choose the agent to transfer to.',
            choose_queue: 'Choose the queue to transfer to.',
            category: 'Category', new_category: 'New category', reclassify: 'Re-classify', saving: 'Saving…',
            category_refused: 'Category not changed: ', choose_category: 'Choose the new category.',
            desk_error: 'The desk lists could not be loaded: {why}.',
            canned: 'Canned replies', canned_label: 'Insert into the reply',
            canned_hint: '(edit it before sending; type / in the reply to search)', canned_choose: 'Choose a reply…',
            loading: 'Loading…', canned_none: 'No canned replies for queue {q}.',
            canned_noqueue: 'No queue known for this conversation.',
            canned_error: 'Canned replies could not be loaded: {why}.', canned_nomatch: 'No canned reply matches “{q}”.',
            canned_search: 'Canned replies matching “{q}” (↑ ↓ to choose, Enter to insert, Esc to close)',
            canned_all: 'Canned replies (type to search; ↑ ↓ to choose, Enter to insert, Esc to close)',
            why_401: 'the token was refused', why_403: 'this queue is not among your skills',
            why_403_conv: 'this conversation is not yours', why_404: 'unknown conversation',
            why_503: 'the desk is unavailable', why_net: 'network error', why_http: 'HTTP {n}',
            reply_placeholder: 'Write a reply… (Enter sends, Shift+Enter for a new line, / for canned replies)',
            conv_closed: 'This conversation is closed.', conv_not_yours: 'This conversation is no longer yours.',
            reply_label: 'Reply', send: 'Send', retry: 'Retry', sending: 'Sending…', not_sent: 'Not sent', read: 'Read',
            too_long: 'The reply is too long (32 KB at most).', not_connected: 'Not connected: try again in a moment.',
            err_pick: 'Could not pick this conversation: ', err_close: 'Could not close it: ',
            err_bad_json: 'The message could not be read', err_bad_msgpack: 'The message could not be read',
            err_bad_type: 'This action is not allowed', err_missing_field: 'Something was missing',
            err_too_large: 'The message is too long', err_bad_utf8: 'The message contains invalid characters',
            err_bad_value: 'A value was not accepted', err_hello_required: 'The session was not started',
            err_bad_token: 'Your session is not valid', err_expired_token: 'Your session has expired',
            err_unknown_tenant: 'This console is set up for another desk',
            err_not_assigned: 'This conversation is not assigned to you',
            err_not_yours: 'This conversation is not yours', err_closed: 'This conversation is closed',
            err_pick_failed: 'The conversation cannot be picked',
            err_transfer_failed: 'The conversation could not be transferred',
            err_classify_failed: 'The category was not changed',
            err_rate_limited: 'You are sending too fast, retrying shortly',
            err_unavailable: 'The service is temporarily unavailable, retrying shortly',
            err_busy: 'The service is busy, retrying shortly',
            err_limit_reached: 'A limit was reached', err_too_many_connections: 'Too many connections from here',
            err_undeliverable: 'The message could not be delivered', error: 'Error ({code})',
            panel: 'Customer', panel_identity: 'Identity', panel_name: 'Name', panel_id: 'Customer id',
            panel_channel: 'Channel', panel_locale: 'Language', panel_started: 'Started',
            panel_order: 'Order', panel_account: 'Account', panel_tier: 'Tier',
            panel_ticket: 'Complaint ticket', panel_ticket_latest: 'Latest complaint ticket',
            panel_rating: 'Survey score', panel_last_agent: 'Last served by', panel_earlier: 'Earlier conversations',
            panel_none: 'None known', panel_no_ticket: 'No complaint', panel_no_rating: 'Not rated',
            panel_error: 'Customer details could not be loaded: {why}.', panel_stars: '{n}/5',
            notify_on: 'Enable notifications', notify_enabled: 'Notifications on',
            notify_blocked: 'Notifications blocked by the browser',
            notify_offer: 'New conversation', notify_message: 'New message from {name}',
            shortcuts: 'Keyboard shortcuts', shortcuts_btn: 'Shortcuts',
            sc_next: 'Next conversation', sc_prev: 'Previous conversation', sc_reply: 'Go to the reply box',
            sc_end: 'End chat (asks first)', sc_transfer: 'Transfer', sc_canned: 'Search canned replies (in the reply box)',
            sc_help: 'Show this list', sc_escape: 'Close a dialog or the canned reply search', close: 'Close',
            internal: 'internal', internal_title: 'Internal: only the desk sees this',
            ev_assigned_you: 'Assigned to you', ev_in_queue: ' (queue {q})', ev_assigned_to: 'Assigned to {who}',
            ev_joined: '{who} joined', ev_left: '{who} left', ev_you: 'You', ev_someone: 'Someone',
            ev_transferred: 'Transferred', ev_transferred_to: 'Transferred to {to}', ev_to_you: 'you',
            ev_to_queue: 'queue {q}', ev_note: ' — note: {note}', ev_reclassified: 'Re-classified as {code}',
            ev_sla: 'SLA breach', ev_closed: 'Conversation closed', ev_closed_code: 'Conversation closed ({code})',
            ev_survey: 'Satisfaction survey offered', ev_rating: 'Customer rated {n}/5',
            role_customer: 'Customer', role_agent: 'Agent', role_system: 'System', role_bot: 'Assistant',
            role_bridge: 'Bridge', role_unknown: 'Unknown', role_other_agent: 'Another agent', you: 'You',
            res_resolved: 'Resolved', res_resolved_workaround: 'Resolved with a workaround',
            res_duplicate: 'Duplicate', res_spam: 'Spam', res_no_response: 'No response from the customer',
            res_unresolved: 'Unresolved (back to the queue)', cat_default: 'Default'
        },
        'zh-CN': {
            page_title: '客服工作台 — chatgw', brand_sub: '客服工作台', language: '语言',
            conn_offline: '离线', conn_connecting: '连接中…', conn_online: '已连接',
            conn_retry: '离线 · {s} 秒后重试',
            status_online: '在线', status_away: '离开 · 点击上线',
            status_online_title: '您会收到新会话。点击切换为离开。',
            status_away_title: '您不会收到新会话。点击上线。',
            sign_out: '退出', sign_in: '登录',
            sign_in_text: '请粘贴管理员提供的客服令牌（由 chatgw-token 生成）。令牌只保存在此浏览器标签页中。',
            token_label: '客服令牌', connect: '连接', paste_first: '请先粘贴令牌。',
            token_refused: '网关拒绝了此令牌', paste_valid: '请粘贴有效的客服令牌。',
            waiting: '排队中', my_convs: '我的会话', no_convs: '暂无分配给您的会话。',
            no_selected: '未选择会话',
            pick_hint: '从排队列表接入客户，或选择您的会话。',
            pick: '接入', picking: '接入中…', no_one_waiting: '无人排队', no_queue_info: '暂无队列信息。',
            no_text: '（暂无内容）', prio_title: '优先级（0-9，越高越先服务）', prio: '优先级 {n}',
            wait_title: '等待时长', customer_n: '客户 {id}', typing: '正在输入…',
            is_typing: '{name} 正在输入…', the_customer: '客户', remove: '从列表移除',
            you_prefix: '我：', attachment: '[附件]',
            chip_closed: '已结束', chip_transferred: '已转出', sub_assigned: '由您接待',
            sub_queue: '队列 {q}', sub_order: '订单 {v}', sub_account: '账号 {v}', sub_tier: '等级 {v}',
            sub_category: '分类 {v}', sub_conv: '会话 {v}',
            end_chat: '结束会话', ending: '正在结束…',
            close_title: '确定结束此会话？', close_resolution: '处理结果', close_confirm: '结束会话',
            cancel: '取消', close_unresolved_hint: '会话将退回队列，由其他客服接待。',
            close_hint: '客户会看到会话已结束。',
            transfer: '转接', transferring: '转接中…', to_agent: '客服', to_queue: '队列',
            transfer_to: '转接给', choose: '请选择…', no_agents: '没有其他在线客服',
            no_queues: '暂无队列信息', agent_option: '{name} · {load}/{cap}', agent_away: ' · 离开',
            queue_option: '{name} · {online} 人在线', note_label: '给下一位客服的备注',
            note_hint: '（可选，客户不可见）', note_placeholder: '需要告知的信息',
            transfer_refused: '转接被拒绝：', choose_agent: '请选择要转接的客服。',
            choose_queue: '请选择要转接的队列。',
            category: '分类', new_category: '新分类', reclassify: '重新分类', saving: '保存中…',
            category_refused: '分类未更改：', choose_category: '请选择新分类。',
            desk_error: '工作台列表加载失败：{why}。',
            canned: '快捷回复', canned_label: '插入到回复',
            canned_hint: '（发送前可编辑；在回复框输入 / 搜索）', canned_choose: '选择快捷回复…',
            loading: '加载中…', canned_none: '队列 {q} 没有快捷回复。',
            canned_noqueue: '该会话没有队列信息。',
            canned_error: '快捷回复加载失败：{why}。', canned_nomatch: '没有匹配“{q}”的快捷回复。',
            canned_search: '匹配“{q}”的快捷回复（↑ ↓ 选择，Enter 插入，Esc 关闭）',
            canned_all: '快捷回复（输入文字搜索；↑ ↓ 选择，Enter 插入，Esc 关闭）',
            why_401: '令牌被拒绝', why_403: '该队列不在您的技能组中',
            why_403_conv: '该会话不属于您', why_404: '会话不存在',
            why_503: '服务暂不可用', why_net: '网络错误', why_http: 'HTTP {n}',
            reply_placeholder: '输入回复…（Enter 发送，Shift+Enter 换行，/ 快捷回复）',
            conv_closed: '该会话已结束。', conv_not_yours: '该会话已不属于您。',
            reply_label: '回复', send: '发送', retry: '重试', sending: '发送中…', not_sent: '未发送', read: '已读',
            too_long: '回复过长（最多 32 KB）。', not_connected: '未连接：请稍后重试。',
            err_pick: '无法接入该会话：', err_close: '无法结束：',
            err_bad_json: '消息无法读取', err_bad_msgpack: '消息无法读取', err_bad_type: '不允许此操作',
            err_missing_field: '缺少必要信息', err_too_large: '消息过长', err_bad_utf8: '消息包含无效字符',
            err_bad_value: '取值不被接受', err_hello_required: '会话尚未开始', err_bad_token: '您的登录无效',
            err_expired_token: '您的登录已过期', err_unknown_tenant: '此工作台设置的客服系统不是本服务',
            err_not_assigned: '该会话未分配给您', err_not_yours: '该会话不属于您',
            err_closed: '该会话已结束', err_pick_failed: '无法接入该会话', err_transfer_failed: '会话无法转接',
            err_classify_failed: '分类未更改', err_rate_limited: '发送过快，稍后自动重试',
            err_unavailable: '服务暂不可用，稍后自动重试', err_busy: '服务繁忙，稍后自动重试',
            err_limit_reached: '已达到限制', err_too_many_connections: '来自此处的连接过多',
            err_undeliverable: '消息无法送达', error: '错误（{code}）',
            panel: '客户', panel_identity: '身份', panel_name: '姓名', panel_id: '客户编号',
            panel_channel: '渠道', panel_locale: '语言', panel_started: '开始于',
            panel_order: '订单', panel_account: '账号', panel_tier: '等级',
            panel_ticket: '投诉单', panel_ticket_latest: '最近投诉单',
            panel_rating: '满意度评分', panel_last_agent: '上次接待', panel_earlier: '历史会话',
            panel_none: '暂无', panel_no_ticket: '无投诉', panel_no_rating: '未评分',
            panel_error: '客户信息加载失败：{why}。', panel_stars: '{n}/5',
            notify_on: '开启通知', notify_enabled: '通知已开启',
            notify_blocked: '浏览器已阻止通知',
            notify_offer: '新会话', notify_message: '{name} 发来新消息',
            shortcuts: '快捷键', shortcuts_btn: '快捷键',
            sc_next: '下一个会话', sc_prev: '上一个会话', sc_reply: '转到回复框',
            sc_end: '结束会话（先确认）', sc_transfer: '转接', sc_canned: '搜索快捷回复（在回复框中）',
            sc_help: '显示此列表', sc_escape: '关闭对话框或快捷回复搜索', close: '关闭',
            internal: '内部', internal_title: '内部信息：只有客服可见',
            ev_assigned_you: '已分配给您', ev_in_queue: '（队列 {q}）', ev_assigned_to: '已分配给 {who}',
            ev_joined: '{who} 加入', ev_left: '{who} 离开', ev_you: '您', ev_someone: '有人',
            ev_transferred: '已转接', ev_transferred_to: '已转接给 {to}', ev_to_you: '您',
            ev_to_queue: '队列 {q}', ev_note: ' —— 备注：{note}', ev_reclassified: '分类改为 {code}',
            ev_sla: '超出服务时限', ev_closed: '会话已结束', ev_closed_code: '会话已结束（{code}）',
            ev_survey: '已发送满意度调查', ev_rating: '客户评分 {n}/5',
            role_customer: '客户', role_agent: '客服', role_system: '系统', role_bot: '助手',
            role_bridge: '桥接', role_unknown: '未知', role_other_agent: '其他客服', you: '我',
            res_resolved: '已解决', res_resolved_workaround: '临时方案解决',
            res_duplicate: '重复会话', res_spam: '垃圾信息', res_no_response: '客户无回应',
            res_unresolved: '未解决（退回队列）', cat_default: '默认'
        }
    };

    /* error codes of error frames (docs/protocol.md); en comes from chatcore.js */
    var store = null;
    try { store = global.localStorage; store.getItem('x'); } catch (e) { store = null; }

    function detect() {
        var saved = null;
        try { saved = store && store.getItem(KEY); } catch (e) { saved = null; }
        if (LOCALES.indexOf(saved) >= 0) return saved;
        var langs = (global.navigator && (global.navigator.languages || [global.navigator.language])) || [];
        for (var i = 0; i < langs.length; i++) {
            var l = String(langs[i] || '').toLowerCase();
            if (l.indexOf('zh') === 0) return 'zh-CN';
            if (l.indexOf('en') === 0) return 'en';
        }
        return 'zh-CN';
    }

    var locale = detect();

    function t(key, vars) {
        var s = (T[locale] && T[locale][key]) || T.en[key] || key;
        if (!vars) return s;
        return s.replace(/\{(\w+)\}/g, function (m, k) { return k in vars ? String(vars[k]) : m; });
    }

    /* 1 when key has a text (for labels of configured codes: res_<code>, cat_<code>) */
    function has(key) { return !!(T.en[key] || (T[locale] && T[locale][key])); }

    /* The error frame's text in the current language: err_<code> (every wire error code of the
     * schema has one), then the gateway's own reason. */
    function errorText(f) {
        var base = has('err_' + f.code) ? t('err_' + f.code) : t('error', { code: f.code || '?' });
        var sep = locale === 'zh-CN' ? '：' : ': ';
        return f.text && f.text !== base ? base + sep + f.text : base;
    }

    /* Set the static texts of root (data-i18n*, see above) and the page's lang. */
    function apply(root) {
        root = root || document;
        root.querySelectorAll('[data-i18n]').forEach(function (n) { n.textContent = t(n.dataset.i18n); });
        root.querySelectorAll('[data-i18n-placeholder]').forEach(function (n) { n.placeholder = t(n.dataset.i18nPlaceholder); });
        root.querySelectorAll('[data-i18n-title]').forEach(function (n) { n.title = t(n.dataset.i18nTitle); });
        root.querySelectorAll('[data-i18n-aria]').forEach(function (n) { n.setAttribute('aria-label', t(n.dataset.i18nAria)); });
        document.documentElement.lang = locale;
    }

    /* Switch to l (one of LOCALES) and remember it; returns 1 when it changed. */
    function setLocale(l) {
        if (LOCALES.indexOf(l) < 0 || l === locale) return 0;
        locale = l;
        try { if (store) store.setItem(KEY, l); } catch (e) { /* full or blocked */ }
        return 1;
    }

    global.AgentI18n = {
        t: t, has: has, apply: apply, setLocale: setLocale, errorText: errorText, LOCALES: LOCALES,
        locale: function () { return locale; }
    };
})(window);
