"""Dynamic clusters: TopFull's clusters, re-formed every step from the
services that are overloaded now (``run --clusters dynamic``).

TopFull controls the APIs that contend for one overloaded service
together, and re-forms these groups as overloads move. The bridge tells
the agent which services each API's calls cross (``services`` in
``GET /apis``) and which services are overloaded (``GET /services``, or
``services`` in the simulator's ``POST /step`` answer). From these,
:func:`form_clusters` groups the APIs:

* APIs whose call paths cross a common overloaded service belong to one
  cluster: the union over shared overloaded services (two APIs that share
  no overloaded service still meet in one cluster when a third crosses an
  overloaded service of each);
* APIs that cross no overloaded service form one cluster of their own, the
  unloaded APIs, which are raised freely: not by the policy but towards
  their demand, by a bounded factor per step (``SpillwayEnv.relax``);
* an API that lists no services keeps its static ``cluster``.

:class:`DynamicClusters` keeps one :class:`~spillway_agent.env.SpillwayEnv`
per current cluster. What happens to the PPO state when clusters change,
kept simple on purpose:

* a cluster whose set of APIs is unchanged keeps its env, and with it its
  history (the previous step's features and action);
* a cluster that split, merged or appeared is a new env whose history
  starts afresh from the current observation, as after a reset (the
  previous step's features are the current ones, the previous action 0);
* what belongs to an API and not to a cluster carries over whatever its
  cluster: the agent's copy of its rate and its measured cost. Rates are
  never re-posted on a re-form, so a re-form changes no limit by itself.

The policy is a feed-forward network of the observation alone, so nothing
else needs to move.
"""

UNLOADED = "(unloaded)"
"""The name of the cluster of APIs that cross no overloaded service."""


# A service is busy, for raising the APIs that cross it, when it reports
# overload or uses this share of its capacity or more (or does not say):
# an API whose services all have about a third of their capacity spare
# may double its goodput in one step (apply._climbing_from_floor).
CLEAR_UTILISATION = 0.7


def busy_services(services):
    """The names of the busy services of a ``GET /services`` list (see
    :data:`CLEAR_UTILISATION`). An entry without a name is skipped; one
    whose utilisation is missing or not a number counts as busy."""
    out = set()
    for s in services or ():
        if not isinstance(s, dict) or s.get("name") is None:
            continue
        try:
            u = float(s.get("utilisation"))
        except (TypeError, ValueError):
            u = float("nan")
        if s.get("overloaded") or not u < CLEAR_UTILISATION:
            out.add(str(s["name"]))
    return out


def overloaded_services(services):
    """The names of the overloaded services of a ``GET /services`` list."""
    return {str(s["name"]) for s in services or () if s.get("overloaded")}


def form_clusters(apis, overloaded):
    """Groups ``apis`` (dicts of ``GET /apis``) by the ``overloaded``
    services (a set of names) they cross.

    Returns ``[(name, [API name, ...]), ...]``, sorted by name, each
    cluster's APIs in the order of ``apis``. A cluster of overloaded
    services is named by them, sorted and joined with ``+`` (``db+index``);
    the APIs that cross none are :data:`UNLOADED`; an API without a
    ``services`` list keeps its static cluster, named ``static:NAME``.
    """
    overloaded = set(overloaded)
    parent = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    # Union-find over the overloaded services: each API joins the services
    # it crosses, so APIs meet through any chain of shared services.
    hot_of = {}
    for info in apis:
        services = info.get("services")
        if not services:
            continue
        hot = sorted({s for s in services if s in overloaded})
        hot_of[info["name"]] = hot
        for s in hot:
            parent.setdefault(s, s)
        for s in hot[1:]:
            union(hot[0], s)

    groups = {}
    members = {}  # root service → every overloaded service of its cluster
    for info in apis:
        name = info["name"]
        if not info.get("services"):
            key = "static:" + str(info.get("cluster", "default"))
        elif not hot_of[name]:
            key = UNLOADED
        else:
            root = find(hot_of[name][0])
            members.setdefault(root, set()).update(hot_of[name])
            key = ("hot", root)
        groups.setdefault(key, []).append(name)

    out = []
    for key, names in groups.items():
        if isinstance(key, tuple):
            key = "+".join(sorted(members[key[1]]))
        out.append((key, names))
    out.sort(key=lambda kv: kv[0])
    return out


class DynamicClusters:
    """One env per current cluster, re-formed by :meth:`reform`.

    Args:
        make_env: a function of a cluster name to a new, unstarted
            :class:`~spillway_agent.env.SpillwayEnv`.
        rates: the agent's copy of every API's rate (req/s), shared by the
            envs, as posted when the run started.
    """

    def __init__(self, make_env, rates):
        self.make_env = make_env
        self.rates = rates
        self.costs = {}  # per API, shared by the envs (env.COST_DRIFT)
        self.envs = {}  # frozenset of API names → env
        self.forms = 0  # re-forms that changed some cluster

    def reform(self, apis, overloaded):
        """Forms the clusters of ``apis`` (dicts of ``GET /apis``) under the
        ``overloaded`` services; returns ``[(name, env, new)]`` in
        :func:`form_clusters` order, ``new`` when the env has no history
        (the cluster split, merged or appeared)."""
        by_name = {a["name"]: a for a in apis}
        out, kept = [], {}
        for name, names in form_clusters(apis, overloaded):
            key = frozenset(names)
            env = self.envs.get(key)
            new = env is None
            if new:
                env = self.make_env(name)
                env.adopt([by_name[n] for n in names], self.rates, self.costs)
            env.cluster = name
            kept[key] = env
            out.append((name, env, new))
        if set(kept) != set(self.envs):
            self.forms += 1
        self.envs = kept
        return out
