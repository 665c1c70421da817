"""How the agent's single scalar action becomes per-API rate limits.

The rules (``cost``, the default; ``cost-strict``, the same with priority
before cost; ``topfull``, the artifact's; ``seed``) are
pure functions of (current rates, API descriptions, action)
and return a new ``{api name: rate req/s}`` dict; they never talk to the
server. ``apis`` is the cluster's APIs as returned by ``GET /apis`` (a list
of dicts, or a dict keyed by name); the fields used are ``name``,
``priority`` (1 = most important), ``lower_bound``, ``upper_bound``,
``offered_rps``, ``cost_ms`` (the cost rule only) and, when ``rates`` lacks an API, ``rate_limit``.

The action is clipped to [-0.5, 0.5] first. Rates of names in ``rates`` that
are not among ``apis`` are copied through unchanged.
"""

ACTION_LOW = -0.5
ACTION_HIGH = 0.5

# Relative headroom given above the offered load when raising: the rate of an
# API is never raised beyond 1.1x what its clients actually sent last tick,
# so idle APIs do not hoard rate that a later surge would get all at once.
OFFERED_HEADROOM = 1.1

_EPS = 1e-9


def _clip_action(action):
    a = float(action)
    if a != a:  # NaN: do nothing rather than poison every rate
        return 0.0
    return min(ACTION_HIGH, max(ACTION_LOW, a))


def _api_map(apis):
    """Normalise ``apis`` to an ordered ``{name: info}`` dict."""
    if isinstance(apis, dict):
        return dict(apis)
    return {a["name"]: a for a in apis}


def api_bounds(info):
    """``(lower_bound, upper_bound)`` of an API dict in req/s; a missing upper
    bound is +inf, a missing lower bound 0."""
    lo = float(info.get("lower_bound", 0.0) or 0.0)
    hi = info.get("upper_bound")
    hi = float("inf") if hi is None else float(hi)
    return lo, max(lo, hi)


def _clamp(x, lo, hi):
    return min(hi, max(lo, x))


def _start_rates(rates, api_map):
    """Copy ``rates``, filling missing cluster APIs from their rate_limit, and
    clamp every cluster API into its bounds (as the server would)."""
    out = dict(rates)
    for name, info in api_map.items():
        lo, hi = api_bounds(info)
        r = out.get(name)
        if r is None:
            r = info.get("rate_limit", lo)
        out[name] = _clamp(float(r), lo, hi)
    return out


def _priority_groups(api_map, most_important_first):
    """APIs grouped by equal priority, ordered by importance.

    Within a group the order of ``apis`` is kept (it only matters for
    reproducibility; the split inside a group is proportional).
    """
    groups = {}
    for name, info in api_map.items():
        groups.setdefault(int(info.get("priority", 1)), []).append(name)
    keys = sorted(groups, reverse=not most_important_first)
    return [groups[k] for k in keys]


def _spread(amount, weights, room):
    """Split ``amount`` over members proportionally to ``weights`` without
    giving any member more than its ``room``; members that fill up drop out
    and their unused share is re-split among the rest (water filling).

    Returns (per-member amounts, the part of ``amount`` that did not fit).
    When every remaining weight is zero the split is equal.
    """
    given = [0.0] * len(weights)
    active = [i for i in range(len(weights)) if room[i] > _EPS]
    left = amount
    while left > _EPS and active:
        wsum = sum(weights[i] for i in active)
        if wsum > _EPS:
            share = {i: left * weights[i] / wsum for i in active}
        else:
            share = {i: left / len(active) for i in active}
        full = [i for i in active if share[i] >= room[i] - given[i] - _EPS]
        if not full:
            for i in active:
                given[i] += share[i]
            left = 0.0
            break
        # Fill the members whose share overflows, then re-split the rest.
        for i in full:
            left -= room[i] - given[i]
            given[i] = room[i]
        active = [i for i in active if i not in full]
    return given, max(0.0, left)


def apply_topfull(rates, apis, action, skip_stuck_groups=True):
    """TopFull's rate-control rule (Algorithm 1), applied per priority group.

    The cluster's APIs are grouped by equal priority value, and groups are
    visited strictly in priority order. The action is a relative step in
    [-0.5, 0.5]:

    * **Cut (a < 0).** The amount to shed is ``|a|`` times the summed rate of
      the *least* important group (largest priority number). That group gives
      it up first, each API in proportion to its current rate but never below
      its ``lower_bound`` (an API that hits its floor stops giving and the
      others in the group cover its share). Whatever the group as a whole
      cannot give cascades to the next less important group, and so on
      towards priority 1. If every API is at its floor, the rest is dropped.
    * **Raise (a > 0).** The amount to add is ``a`` times the summed rate of
      the *most* important group (priority 1 first). It goes to that group in
      proportion to current rates, each API capped at
      ``min(upper_bound, 1.1 x offered_rps)`` so a rate never runs far ahead
      of real demand; what does not fit cascades to the next more important
      group. An API with no known offered load (``offered_rps`` missing or 0)
      is capped at ``max(current rate, lower_bound)``: it takes nothing, since
      rate given to an idle API would only be wasted headroom. A raise never
      lowers a rate that is already above its cap.

    ``skip_stuck_groups`` (default True) decides which group the amount is
    measured on when the first group cannot move at all (every API of it at
    its floor for a cut, or at its cap for a raise): then the amount is
    ``|a|`` times the summed rate of the first group, in cascade order, that
    can still move. Without it, a cut measured on a floored group of, say,
    one API at 10 req/s would shed only 5 req/s per step however large the
    rest of the cluster is; the seed rule likewise skips APIs that cannot
    move. With False the amount is always measured on the extreme group.

    Returns a new dict of rates (req/s); the input is not modified.
    """
    a = _clip_action(action)
    api_map = _api_map(apis)
    out = _start_rates(rates, api_map)
    if a == 0.0 or not api_map:
        return out

    cutting = a < 0
    groups = _priority_groups(api_map, most_important_first=not cutting)
    if cutting:
        limits = {n: api_bounds(api_map[n])[0] for n in api_map}  # floors
        room = {n: max(0.0, out[n] - limits[n]) for n in api_map}
    else:
        limits = {n: _raise_cap(api_map[n], out[n]) for n in api_map}  # caps
        room = {n: max(0.0, limits[n] - out[n]) for n in api_map}

    base = groups[0]
    if skip_stuck_groups:
        movable = [g for g in groups if any(room[n] > _EPS for n in g)]
        if not movable:
            return out
        base = movable[0]
    remaining = abs(a) * sum(out[n] for n in base)

    for group in groups:
        if remaining <= _EPS:
            break
        weights = [out[n] for n in group]
        moved, remaining = _spread(remaining, weights, [room[n] for n in group])
        for n, m in zip(group, moved):
            if m <= 0.0:
                continue
            if m >= room[n] - _EPS:
                out[n] = limits[n]  # land exactly on the floor or cap
            elif cutting:
                out[n] = max(limits[n], out[n] - m)
            else:
                out[n] = min(limits[n], out[n] + m)
    return out


def _raise_cap(info, current_rps):
    """Highest rate a raise may give an API (see :func:`apply_topfull`)."""
    lo, hi = api_bounds(info)
    offered = info.get("offered_rps")
    offered = float(offered) if offered is not None else 0.0
    if offered > 0:
        return max(lo, min(hi, OFFERED_HEADROOM * offered))
    return max(current_rps, lo)


def _goodput_cap(info, cap, current_rps):
    """``cap`` lowered to :data:`RAISE_OVER_GOODPUT` × the API's last
    goodput (``goodput_rps``), but never below the current rate or the
    lower bound; ``cap`` itself when the goodput is unknown."""
    g = info.get("goodput_rps")
    try:
        g = float(g)
    except (TypeError, ValueError):
        return cap
    if not g == g:
        return cap
    lo, _ = api_bounds(info)
    factor = RAISE_OVER_GOODPUT_NEAR_FLOOR if _climbing_from_floor(info, current_rps, lo) else RAISE_OVER_GOODPUT
    return min(cap, max(current_rps, lo, factor * g))


# An API is slow elsewhere when every service it crosses is clear
# (``path_clear``) and yet its queue is at least this share of its SLO.
SLOW_ELSEWHERE_SLO_FRACTION = 0.5


def _slow_elsewhere(info):
    """Whether an API's latency comes from outside the services it crosses:
    all of them are clear (``path_clear``: under 0.7 of capacity, not
    overloaded) and its queue (``queue_ms``) is at least
    :data:`SLOW_ELSEWHERE_SLO_FRACTION` of its SLO. A dependency that
    answers late or hangs while holding no worker looks like this; cutting
    the API relieves no service, and cut to its floor it took many steps to
    climb back once the dependency answered again."""
    return info.get("path_clear") is True and _queue_over_slo(info) >= SLOW_ELSEWHERE_SLO_FRACTION


def _queue_over_slo(info):
    """An API's queue (``queue_ms``) ÷ its SLO (``slo_ms``); NaN when
    either is missing or not a positive number."""
    try:
        q = float(info.get("queue_ms"))
        slo = float(info.get("slo_ms", 0.0) or 0.0)
    except (TypeError, ValueError):
        return float("nan")
    return q / slo if slo > 0 else float("nan")


def _climbing_from_floor(info, current_rps, lo):
    """Whether an API may climb by :data:`RAISE_OVER_GOODPUT_NEAR_FLOOR`:
    its queue (``queue_ms``) under :data:`HOT_SLO_FRACTION` of its SLO, no
    other limiter holding it back (:func:`_held`), and either its rate
    within :data:`NEAR_FLOOR` × its lower bound or every service it
    crosses clear (``path_clear``, set by the env from the server's service
    signals: under 0.7 of its capacity and not overloaded; TopFull raises
    the APIs that cross no overloaded service freely)."""
    if not _queue_over_slo(info) < HOT_SLO_FRACTION or _held(info, current_rps):
        return False
    return (lo > 0 and current_rps <= NEAR_FLOOR * lo) or info.get("path_clear") is True


def apply_seed(rates, apis, action):
    """The seed agent's rule: move exactly one API by the factor ``(1 + a)``.

    APIs are visited in priority order: most important first when raising
    (a > 0), least important first when cutting (a < 0); ties keep the order
    of ``apis``. The first API that can still move in that direction (below
    its ``upper_bound`` for a raise, above its ``lower_bound`` for a cut) gets
    ``rate * (1 + a)`` clamped to its bounds; every other API is unchanged.
    With ``a == 0`` or no movable API nothing changes.

    Returns a new dict of rates (req/s).
    """
    a = _clip_action(action)
    api_map = _api_map(apis)
    out = _start_rates(rates, api_map)
    if a == 0.0:
        return out
    names = list(api_map)
    order = {n: i for i, n in enumerate(names)}
    if a > 0:
        names.sort(key=lambda n: (int(api_map[n].get("priority", 1)), order[n]))
    else:
        names.sort(key=lambda n: (-int(api_map[n].get("priority", 1)), order[n]))
    for n in names:
        lo, hi = api_bounds(api_map[n])
        r = out[n]
        if (a > 0 and r < hi) or (a < 0 and r > lo):
            out[n] = _clamp(r * (1.0 + a), lo, hi)
            break
    return out


# A raise by the cost rule never takes an API beyond this multiple of the
# goodput it just delivered (``goodput_rps``): the limit probes for
# capacity in steps the service has shown it can serve, instead of putting
# a second of overload into the queue at once.
RAISE_OVER_GOODPUT = 1.1

# ... except for an API that shows no queue, that no other limiter holds
# back, and that is near its floor or whose services all have room: it may
# double its goodput (_climbing_from_floor). A cut to the floor (say while
# a dependency hung and nothing was answered) otherwise took about 25
# steps of 1.1 to climb back to capacity once the cause was gone.
RAISE_OVER_GOODPUT_NEAR_FLOOR = 2.0
NEAR_FLOOR = 2.0

# Costs within this factor of the cheapest API of a tier share the tier: a
# cut or raise is split over a tier in proportion to work, so two APIs of
# nearly the same measured cost do not trade places step by step.
COST_TIER_RATIO = 2.0


def _cost_tiers(names, cost):
    """``names`` in tiers of similar cost, cheapest tier first. A tier
    starts at its cheapest API and takes every API whose cost is within
    :data:`COST_TIER_RATIO` of it."""
    tiers = []
    for n in sorted(names, key=lambda n: cost[n]):
        if tiers and cost[n] <= COST_TIER_RATIO * cost[tiers[-1][0]]:
            tiers[-1].append(n)
        else:
            tiers.append([n])
    return tiers


# An API is congested ("hot") when its queueing delay is at least this
# fraction of the cluster's largest: APIs behind one congested service see
# about the same delay, and an API whose private service is congested sees
# it alone...
HOT_QUEUE_FRACTION = 0.5
# ... and at least this fraction of its SLO, so that noise in idle
# latencies makes no API hot.
HOT_SLO_FRACTION = 0.1


def _hot(api_map):
    """The congested APIs: those whose ``queue_ms`` (p95 latency above its
    cost) is at least :data:`HOT_QUEUE_FRACTION` of the cluster's largest
    and :data:`HOT_SLO_FRACTION` of their ``slo_ms``. An API that reports
    no queue is hot when any is."""
    queue = {}
    for n, info in api_map.items():
        try:
            q = float(info.get("queue_ms"))
        except (TypeError, ValueError):
            continue
        if q == q and q != float("inf"):
            queue[n] = max(0.0, q)
    top = max(queue.values(), default=0.0)
    hot = set()
    for n, info in api_map.items():
        q = queue.get(n, top)
        slo = float(info.get("slo_ms", 0.0) or 0.0)
        if top > 0.0 and q >= HOT_QUEUE_FRACTION * top and q >= HOT_SLO_FRACTION * slo:
            hot.add(n)
    return hot


def api_cost(info):
    """An API's cost per request (``cost_ms``, any positive unit); 1 when
    unknown, so that APIs of unknown cost are treated alike."""
    c = info.get("cost_ms")
    try:
        c = float(c)
    except (TypeError, ValueError):
        return 1.0
    return c if c > 0 and c == c and c != float("inf") else 1.0


def apply_cost(rates, apis, action, strict_priority=False):
    """The default rule: one step of the cluster's work, placed where it
    buys the most goodput, with priorities kept.

    An API's work is its rate times its cost per request (``cost_ms`` in
    its dict; the env measures it as the API's least recent latency). The
    action is a relative step of the cluster's total work Σ costᵢ·rateᵢ:

    * **Cut (a < 0).** ``|a|`` × the work of the congested APIs is shed,
      from them alone: those whose queueing delay (``queue_ms``, p95 above
      cost) is at least half the cluster's largest, so that a service
      congested by one API does not cost the others their rate (TopFull
      forms its clusters from the overloaded services for the same reason;
      a queue is the one sign of a congested service that the bridge
      reports).
      Among them the most expensive cost tier gives first (tiers:
      :func:`_cost_tiers`), and inside a tier the least important priority
      group, each API of a group in proportion to its work and never below
      its ``lower_bound``. What a group or tier cannot give passes on,
      towards more important groups and then cheaper tiers.
    * **Raise (a > 0).** ``a`` × the work of the APIs that see no
      congestion is added to them alone: cheapest tier first, most
      important group first inside a tier, each API capped as in :func:`apply_topfull`
      (1.1 × its offered load, its upper bound) and at 1.1 × the goodput
      it just delivered (``goodput_rps``; 2 × for an API with no queue
      and nothing else holding it back that is within twice its floor or
      whose services all have room, :func:`_climbing_from_floor`), so that
      a raise probes for capacity rather than queueing a second of overload. So an API is not held at
      its floor because a more important one congests a service of its own.

    When no API is congested, or all are, a cut or raise takes every API.
    A cut never takes an API that is slow elsewhere (:func:`_slow_elsewhere`:
    its services clear, its queue half its SLO or more).

    * **Swap.** What a raise cannot place (every API at its cap) while a
      cheaper API is held back by another limiter, its goodput under 0.9 ×
      what its rate and clients allowed (the blueprint's queue guard: the
      bottleneck is full), is shed instead from the APIs that cost more
      than twice as much, most expensive first (:func:`_swap`). The guard then admits more of the cheaper API,
      whose next raise follows its goodput.

    **Priorities order APIs of comparable cost.** Inside a cost tier (costs
    within :data:`COST_TIER_RATIO` of each other) the least important API
    is cut first and the most important raised first, as TopFull's rule
    does. Between tiers cost comes first: an API that costs more than
    twice as much per request is cut before a cheaper one whatever their
    priorities, since keeping it takes the answers of several cheaper
    requests from the bottleneck (on an app whose two APIs differ 20× in
    cost, strict priorities made goodput swing between 0.20 and 0.85 of
    the optimum with the priority labels). ``strict_priority`` (rule
    ``cost-strict``) puts priority before cost instead: the least
    important group is cut first whatever it costs, and the swap takes
    only from APIs of the same or lower importance.

    With one shared bottleneck this is the order of the goodput-maximal
    admission (cheapest requests first), so the rule can reach the
    optimum that the proportional rules cannot; the agent only decides how
    big a step to take. With equal costs it is apply_topfull measured on
    the whole cluster's rate.

    Returns a new dict of rates (req/s); the input is not modified.
    """
    a = _clip_action(action)
    api_map = _api_map(apis)
    out = _start_rates(rates, api_map)
    if a == 0.0 or not api_map:
        return out
    cutting = a < 0
    cost = {n: api_cost(info) for n, info in api_map.items()}
    hot = _hot(api_map)
    if hot and hot != set(api_map):  # cut the congested, raise the others
        api_map = {n: info for n, info in api_map.items() if (n in hot) == cutting}
    if cutting:  # a cut cannot speed up a dependency that holds no worker
        api_map = {n: info for n, info in api_map.items() if not _slow_elsewhere(info)}
    if cutting:
        limits = {n: api_bounds(api_map[n])[0] for n in api_map}
        room = {n: max(0.0, out[n] - limits[n]) for n in api_map}
    else:
        limits = {n: _goodput_cap(api_map[n], _raise_cap(api_map[n], out[n]), out[n])
                  for n in api_map}
        room = {n: max(0.0, limits[n] - out[n]) for n in api_map}
    remaining = abs(a) * sum(cost[n] * out[n] for n in api_map)
    start = dict(out)
    remaining = _place(out, api_map, cost, limits, room, remaining, cutting, strict_priority)
    if not cutting and remaining > _EPS:
        _swap(out, start, _api_map(apis), cost, remaining, strict_priority)
    return out


def apply_cost_strict(rates, apis, action):
    """:func:`apply_cost` with priority before cost (rule ``cost-strict``)."""
    return apply_cost(rates, apis, action, strict_priority=True)


# An API is held by another limiter when its goodput is below this share of
# what its own rate and its clients allowed (min of rate and offered load):
# a concurrency limit at the control point (the blueprint's queue guard) is
# rejecting it.
HELD_GOODPUT_SHARE = 0.9


def _held(info, rate):
    """Whether another limiter than the API's rate holds it back."""
    try:
        g = float(info.get("goodput_rps"))
        offered = float(info.get("offered_rps"))
    except (TypeError, ValueError):
        return False
    if not (g == g and offered == offered):
        return False
    allowed = min(rate, offered)
    return allowed > 0 and g < HELD_GOODPUT_SHARE * allowed


def _swap(out, start, api_map, cost, amount, strict_priority):
    """A raise the caps could not place, while a cheaper API is held back
    by another limiter (the queue guard: the bottleneck is full), moves
    that much work from the APIs that cost more than twice the cheapest
    held one (with ``strict_priority``, only those of the same or lower
    importance), most expensive first, never below their lower bounds. The held API's rate is not raised here: the
    guard admits more of it once the expensive work is gone, and the next
    raise follows its goodput."""
    held = [n for n in api_map if _held(api_map[n], start[n])]
    if not held:
        return
    cheapest = min(held, key=lambda n: cost[n])
    prio = int(api_map[cheapest].get("priority", 1) or 1)
    donors = [n for n in api_map
              if cost[n] > COST_TIER_RATIO * cost[cheapest]
              and (not strict_priority or int(api_map[n].get("priority", 1) or 1) >= prio)]
    for n in sorted(donors, key=lambda n: -cost[n]):
        if amount <= _EPS:
            return
        lo, _ = api_bounds(api_map[n])
        give = min(max(0.0, out[n] - lo), amount / cost[n])
        out[n] -= give
        amount -= give * cost[n]


def _place(out, api_map, cost, limits, room, remaining, cutting, strict_priority):
    """Moves ``remaining`` work into or out of ``out`` by cost tier and
    priority group (see :func:`apply_cost`) and returns what could not be
    placed."""
    for part in _placement_order(api_map, cost, cutting, strict_priority):
        if remaining <= _EPS:
            return 0.0
        weights = [cost[n] * out[n] for n in part]
        moved, remaining = _spread(remaining, weights, [cost[n] * room[n] for n in part])
        for n, m in zip(part, moved):
            if m <= 0.0:
                continue
            if m >= cost[n] * room[n] - _EPS:
                out[n] = limits[n]
            elif cutting:
                out[n] = max(limits[n], out[n] - m / cost[n])
            else:
                out[n] = min(limits[n], out[n] + m / cost[n])
    return remaining


def _placement_order(api_map, cost, cutting, strict_priority):
    """The sets of APIs a cut or raise visits in turn, each split in
    proportion to work: cost tiers (most expensive first for a cut,
    cheapest first for a raise), each in priority groups (least important
    first for a cut); with ``strict_priority``, priority groups each in
    cost tiers."""
    def tiers(names):
        t = _cost_tiers(names, cost)
        return t[::-1] if cutting else t

    def groups(names):
        return _priority_groups({n: api_map[n] for n in names}, most_important_first=not cutting)

    if strict_priority:
        return [tier for group in groups(list(api_map)) for tier in tiers(group)]
    return [group for tier in tiers(list(api_map)) for group in groups(tier)]


APPLY_RULES = {"cost": apply_cost, "cost-strict": apply_cost_strict, "topfull": apply_topfull, "seed": apply_seed}
