"""Exact numbers for the two action rules in spillway_agent.apply."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spillway_agent.apply import apply_cost, apply_cost_strict, apply_seed, apply_topfull  # noqa: E402


def api(name, priority, lo=10.0, hi=2000.0, offered=1000.0):
    return {"name": name, "priority": priority, "lower_bound": lo, "upper_bound": hi,
            "offered_rps": offered}


class TopFullCutTest(unittest.TestCase):
    def setUp(self):
        self.apis = [api("A", 1, offered=500), api("B", 1, offered=100), api("C", 2),
                     api("D", 3, lo=50), api("E", 3, lo=80)]
        self.rates = {"A": 400.0, "B": 100.0, "C": 300.0, "D": 100.0, "E": 100.0}

    def test_cut_cascades_to_next_group_when_lowest_group_hits_floors(self):
        # delta = 0.5 * (100 + 100) = 100; D can give 50, E 20 -> 30 left for C.
        out = apply_topfull(self.rates, self.apis, -0.5)
        self.assertEqual(out, {"A": 400.0, "B": 100.0, "C": 270.0, "D": 50.0, "E": 80.0})

    def test_cut_refills_inside_group_before_cascading(self):
        # delta = 0.3 * 200 = 60: shares 30/30, E can give only 10 (floor 90),
        # D covers the other 20 and nothing reaches C.
        apis = [api("C", 2), api("D", 3, lo=10), api("E", 3, lo=90)]
        out = apply_topfull({"C": 300.0, "D": 100.0, "E": 100.0}, apis, -0.3)
        self.assertAlmostEqual(out["D"], 50.0)
        self.assertEqual(out["E"], 90.0)
        self.assertEqual(out["C"], 300.0)

    def test_cut_is_proportional_to_rates(self):
        apis = [api("P", 1), api("X", 2), api("Y", 2)]
        out = apply_topfull({"P": 500.0, "X": 300.0, "Y": 100.0}, apis, -0.25)
        # delta = 0.25 * 400 = 100, split 3:1
        self.assertAlmostEqual(out["X"], 225.0)
        self.assertAlmostEqual(out["Y"], 75.0)
        self.assertEqual(out["P"], 500.0)

    def test_cut_cascades_through_several_groups_and_stops_at_all_floors(self):
        apis = [api("A", 1, lo=90), api("B", 2, lo=95), api("C", 3, lo=99)]
        # delta = 0.5 * 100 = 50: C gives 1, B 5, A 10; the remaining 34 is dropped.
        out = apply_topfull({"A": 100.0, "B": 100.0, "C": 100.0}, apis, -0.5)
        self.assertEqual(out, {"A": 90.0, "B": 95.0, "C": 99.0})

    def test_cut_measured_on_first_group_that_can_give(self):
        apis = [api("A", 1), api("B", 2), api("C", 3, lo=10)]
        rates = {"A": 1000.0, "B": 1000.0, "C": 10.0}
        # C is at its floor: the cut is 0.5 * B's 1000, taken from B.
        self.assertEqual(apply_topfull(rates, apis, -0.5), {"A": 1000.0, "B": 500.0, "C": 10.0})
        # Measured on the floored C it would be only 0.5 * 10 = 5.
        self.assertEqual(apply_topfull(rates, apis, -0.5, skip_stuck_groups=False),
                         {"A": 1000.0, "B": 995.0, "C": 10.0})
        # Everything at its floor: nothing moves.
        floored = {"A": 10.0, "B": 10.0, "C": 10.0}
        self.assertEqual(apply_topfull(floored, apis, -0.5), floored)

    def test_action_is_clipped(self):
        self.assertEqual(apply_topfull(self.rates, self.apis, -3.0),
                         apply_topfull(self.rates, self.apis, -0.5))


class TopFullRaiseTest(unittest.TestCase):
    def test_raise_capped_at_offered_headroom_and_cascades(self):
        apis = [api("A", 1, offered=500), api("B", 1, offered=100), api("C", 2, offered=1000),
                api("D", 3)]
        rates = {"A": 400.0, "B": 100.0, "C": 300.0, "D": 100.0}
        # delta = 0.5 * 500 = 250: A capped at 550 (+150), B at 110 (+10),
        # the remaining 90 goes to C (cap 1100); D untouched.
        out = apply_topfull(rates, apis, 0.5)
        self.assertAlmostEqual(out["A"], 550.0)
        self.assertAlmostEqual(out["B"], 110.0)
        self.assertAlmostEqual(out["C"], 390.0)
        self.assertEqual(out["D"], 100.0)
        self.assertAlmostEqual(sum(out.values()) - sum(rates.values()), 250.0)

    def test_raise_capped_at_upper_bound(self):
        apis = [api("A", 1, hi=450, offered=5000), api("B", 2, offered=5000)]
        out = apply_topfull({"A": 400.0, "B": 100.0}, apis, 0.5)
        # delta 200: A takes 50 up to its bound, B gets 150.
        self.assertEqual(out["A"], 450.0)
        self.assertAlmostEqual(out["B"], 250.0)

    def test_idle_api_takes_nothing_and_high_rate_is_not_lowered(self):
        apis = [api("A", 1, offered=0), api("B", 1, offered=100), api("C", 2, offered=2000)]
        rates = {"A": 200.0, "B": 300.0, "C": 100.0}
        # A is idle (cap = its rate 200) and B is already above 1.1 x 100, so
        # group 1 cannot move: the amount is measured on C, 0.2 * 100 = 20.
        out = apply_topfull(rates, apis, 0.2)
        self.assertEqual(out["A"], 200.0)
        self.assertEqual(out["B"], 300.0)
        self.assertAlmostEqual(out["C"], 120.0)
        # Measured on the stuck group instead: 0.2 * 500 = 100, all to C.
        out = apply_topfull(rates, apis, 0.2, skip_stuck_groups=False)
        self.assertEqual((out["A"], out["B"]), (200.0, 300.0))
        self.assertAlmostEqual(out["C"], 200.0)

    def test_zero_action_changes_nothing_and_input_untouched(self):
        apis = [api("A", 1), api("B", 2)]
        rates = {"A": 100.0, "B": 200.0, "other": 7.0}
        before = dict(rates)
        self.assertEqual(apply_topfull(rates, apis, 0.0), before)
        apply_topfull(rates, apis, 0.4)
        self.assertEqual(rates, before)
        self.assertEqual(apply_topfull(rates, apis, 0.4)["other"], 7.0)

    def test_rates_start_clamped_to_bounds(self):
        apis = [api("A", 1, lo=100, hi=300, offered=1000)]
        self.assertEqual(apply_topfull({"A": 5000.0}, apis, 0.0), {"A": 300.0})
        self.assertEqual(apply_topfull({"A": 1.0}, apis, -0.5), {"A": 100.0})


class SeedRuleTest(unittest.TestCase):
    def setUp(self):
        self.apis = [api("low", 3, lo=100, hi=1500), api("top", 1, lo=100, hi=1500),
                     api("mid", 2, lo=100, hi=1500)]

    def test_raise_touches_most_important_api_only(self):
        out = apply_seed({"low": 1000.0, "top": 1000.0, "mid": 1000.0}, self.apis, 0.2)
        self.assertEqual(out, {"low": 1000.0, "top": 1200.0, "mid": 1000.0})

    def test_raise_skips_api_at_upper_bound_and_clamps(self):
        out = apply_seed({"low": 1000.0, "top": 1500.0, "mid": 1400.0}, self.apis, 0.5)
        self.assertEqual(out, {"low": 1000.0, "top": 1500.0, "mid": 1500.0})

    def test_cut_touches_least_important_api_only(self):
        out = apply_seed({"low": 1000.0, "top": 1000.0, "mid": 1000.0}, self.apis, -0.25)
        self.assertEqual(out, {"low": 750.0, "top": 1000.0, "mid": 1000.0})

    def test_cut_skips_api_at_lower_bound_and_clamps(self):
        out = apply_seed({"low": 100.0, "top": 1000.0, "mid": 150.0}, self.apis, -0.5)
        self.assertEqual(out, {"low": 100.0, "top": 1000.0, "mid": 100.0})

    def test_nothing_movable(self):
        rates = {"low": 100.0, "top": 100.0, "mid": 100.0}
        self.assertEqual(apply_seed(rates, self.apis, -0.5), rates)


if __name__ == "__main__":
    unittest.main()


def capi(name, priority, cost, lo=10.0, hi=5000.0, offered=1000.0):
    d = api(name, priority, lo=lo, hi=hi, offered=offered)
    d["cost_ms"] = cost
    return d


class CostRuleTest(unittest.TestCase):
    def test_cut_takes_the_most_expensive_first_in_work_units(self):
        # One priority: work = 2*900 + 40*100 = 5800; a = -0.25 sheds 1450
        # ms·req/s, all from the 40 ms API: 1450 / 40 = 36.25 req/s.
        apis = [capi("cheap", 1, 2.0), capi("dear", 1, 40.0)]
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, -0.25)
        self.assertEqual(out["cheap"], 900.0)
        self.assertAlmostEqual(out["dear"], 100.0 - 36.25)

    def test_cut_passes_to_cheaper_tier_at_the_floor(self):
        apis = [capi("cheap", 1, 2.0), capi("dear", 1, 40.0, lo=90.0)]
        # work 5800, cut 0.2 -> 1160: dear gives 10 req/s (400), cheap the
        # other 760 / 2 = 380 req/s.
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, -0.2)
        self.assertEqual(out["dear"], 90.0)
        self.assertAlmostEqual(out["cheap"], 520.0)

    def test_cost_comes_before_priority_between_tiers(self):
        # dear costs 20x cheap: though more important, it is cut first
        # (work 5800, a = -0.1 sheds 580 = 14.5 req/s of dear) ...
        apis = [capi("cheap", 2, 2.0), capi("dear", 1, 40.0)]
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, -0.1)
        self.assertEqual(out["cheap"], 900.0)
        self.assertAlmostEqual(out["dear"], 100.0 - 14.5)
        # ... and the cheap one is raised first.
        apis[0]["offered_rps"], apis[1]["offered_rps"] = 2000.0, 2000.0
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, 0.1)
        self.assertAlmostEqual(out["cheap"], 900.0 + 290.0)
        self.assertEqual(out["dear"], 100.0)

    def test_priority_orders_apis_of_comparable_cost(self):
        # 15 ms is within 2x of 10 ms: one tier, so the less important
        # API gives first (work 2500, a = -0.2 sheds 500 = 50 req/s of low).
        apis = [capi("low", 2, 10.0), capi("top", 1, 15.0)]
        out = apply_cost({"low": 100.0, "top": 100.0}, apis, -0.2)
        self.assertEqual(out["top"], 100.0)
        self.assertAlmostEqual(out["low"], 50.0)
        # and a raise goes to the more important one first
        out = apply_cost({"low": 100.0, "top": 100.0}, apis, 0.2)
        self.assertEqual(out["low"], 100.0)
        self.assertAlmostEqual(out["top"], 100.0 + 500.0 / 15.0)

    def test_strict_priority_comes_before_cost(self):
        # The cheap API is less important: cost-strict cuts it first.
        apis = [capi("cheap", 2, 2.0), capi("dear", 1, 40.0)]
        out = apply_cost_strict({"cheap": 900.0, "dear": 100.0}, apis, -0.1)
        self.assertEqual(out["dear"], 100.0)
        self.assertAlmostEqual(out["cheap"], 900.0 - 580.0 / 2.0)

    def test_similar_costs_share_a_tier_in_proportion_to_work(self):
        apis = [capi("a", 1, 10.0), capi("b", 1, 15.0)]
        # one tier (15 <= 2 * 10): work 10*100 + 15*100 = 2500; cut 0.2 -> 500,
        # split 1000:1500 -> 200 and 300 -> 20 req/s each.
        out = apply_cost({"a": 100.0, "b": 100.0}, apis, -0.2)
        self.assertAlmostEqual(out["a"], 80.0)
        self.assertAlmostEqual(out["b"], 80.0)

    def test_raise_gives_the_cheapest_first_up_to_its_cap(self):
        apis = [capi("cheap", 1, 2.0, offered=1000.0), capi("dear", 1, 40.0, offered=200.0)]
        # work 2*500 + 40*100 = 5000; raise 0.5 -> 2500: cheap takes up to
        # 1100 (600 req/s = 1200), dear gets the other 1300 / 40 = 32.5.
        out = apply_cost({"cheap": 500.0, "dear": 100.0}, apis, 0.5)
        self.assertAlmostEqual(out["cheap"], 1100.0)
        self.assertAlmostEqual(out["dear"], 132.5)

    def test_unknown_costs_are_equal(self):
        apis = [api("a", 1), api("b", 1)]
        out = apply_cost({"a": 100.0, "b": 300.0}, apis, -0.5)
        self.assertAlmostEqual(out["a"], 50.0)
        self.assertAlmostEqual(out["b"], 150.0)

    def test_a_cut_spares_apis_that_do_not_see_the_congestion(self):
        # cart's private service is congested (queue 150 ms); home and
        # product queue 10 ms: only cart is cut, though less important
        # APIs exist.
        apis = [capi("home", 3, 5.0), capi("product", 2, 5.0), capi("cart", 1, 20.0)]
        for a, q in zip(apis, (10.0, 10.0, 150.0)):
            a["queue_ms"] = q
        rates = {"home": 500.0, "product": 500.0, "cart": 200.0}
        out = apply_cost(rates, apis, -0.1)
        self.assertEqual(out["home"], 500.0)
        self.assertEqual(out["product"], 500.0)
        self.assertAlmostEqual(out["cart"], 180.0)
        # and a raise goes to the APIs that see no congestion, though cart
        # is the most important: 0.1 x their work (2500 + 2500) = 500, to
        # product first (priority 2), capped at 1.1 x 1000 offered.
        out = apply_cost(rates, apis, 0.1)
        self.assertEqual(out["cart"], 200.0)
        self.assertAlmostEqual(out["product"], 600.0)
        self.assertEqual(out["home"], 500.0)

    def test_a_shared_queue_makes_every_api_hot(self):
        apis = [capi("cheap", 1, 2.0), capi("dear", 1, 40.0)]
        apis[0]["queue_ms"], apis[1]["queue_ms"] = 200.0, 160.0
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, -0.25)
        self.assertEqual(out["cheap"], 900.0)
        self.assertAlmostEqual(out["dear"], 100.0 - 36.25)

    def test_a_raise_stays_within_a_tenth_over_the_goodput(self):
        # cheap may rise to 1.1 x offered (1100) but has just served 600:
        # its cap is 660; dear gets the rest of the work.
        apis = [capi("cheap", 1, 2.0, offered=1000.0), capi("dear", 1, 40.0, offered=200.0)]
        apis[0]["goodput_rps"], apis[1]["goodput_rps"] = 600.0, 100.0
        out = apply_cost({"cheap": 600.0, "dear": 100.0}, apis, 0.5)
        self.assertAlmostEqual(out["cheap"], 660.0)
        self.assertAlmostEqual(out["dear"], 110.0)
        # a cut is not capped by goodput, and a rate above the cap stays
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, 0.1)
        self.assertEqual(out["cheap"], 900.0)

    def test_an_api_near_its_floor_without_a_queue_climbs_by_doubling(self):
        # At its floor (lo 10, rate 10), serving all it is allowed, no
        # queue: the raise may take it to 2 x its goodput, not 1.1 x.
        apis = [capi("a", 1, 5.0, lo=10.0, offered=1000.0)]
        apis[0].update(goodput_rps=10.0, queue_ms=1.0, slo_ms=100.0)
        out = apply_cost({"a": 10.0}, apis, 0.5)
        self.assertAlmostEqual(out["a"], 15.0)  # 0.5 x 10: within the cap of 20
        # with a queue, or far from its floor, the cap is 1.1 x goodput
        apis[0]["queue_ms"] = 20.0
        self.assertAlmostEqual(apply_cost({"a": 10.0}, apis, 0.5)["a"], 11.0)
        apis[0]["queue_ms"] = 1.0
        apis[0]["goodput_rps"] = 30.0
        self.assertAlmostEqual(apply_cost({"a": 30.0}, apis, 0.5)["a"], 33.0)
        # held back by another limiter (goodput 5 of the 10 allowed): 1.1 x
        apis[0]["goodput_rps"] = 5.0
        self.assertAlmostEqual(apply_cost({"a": 10.0}, apis, 0.5)["a"], 10.0)

    def test_an_api_whose_services_are_clear_climbs_by_doubling(self):
        # Far above its floor, but every service it crosses has room.
        apis = [capi("a", 1, 5.0, lo=10.0, offered=1000.0)]
        apis[0].update(goodput_rps=100.0, queue_ms=1.0, slo_ms=100.0, path_clear=True)
        self.assertAlmostEqual(apply_cost({"a": 100.0}, apis, 0.5)["a"], 150.0)
        apis[0]["path_clear"] = False
        self.assertAlmostEqual(apply_cost({"a": 100.0}, apis, 0.5)["a"], 110.0)

    def test_a_cut_spares_an_api_slow_elsewhere(self):
        # "slow" waits 200 ms on a dependency that holds no worker: its
        # services are clear, its queue is past half its SLO. A cut
        # relieves nothing there, so it comes from "busy" alone.
        apis = [capi("slow", 1, 5.0), capi("busy", 1, 5.0)]
        apis[0].update(queue_ms=200.0, slo_ms=100.0, path_clear=True)
        apis[1].update(queue_ms=150.0, slo_ms=100.0, path_clear=False)
        out = apply_cost({"slow": 100.0, "busy": 100.0}, apis, -0.2)
        self.assertEqual(out["slow"], 100.0)
        self.assertAlmostEqual(out["busy"], 80.0)
        # with a busy service on its path, or a short queue, it is cut
        apis[0]["path_clear"] = False
        self.assertLess(apply_cost({"slow": 100.0, "busy": 100.0}, apis, -0.2)["slow"], 100.0)
        apis[0].update(path_clear=True, queue_ms=40.0)
        apis[1]["queue_ms"] = 40.0
        self.assertLess(apply_cost({"slow": 100.0, "busy": 100.0}, apis, -0.2)["slow"], 100.0)
        # alone, it is not cut at all
        only = [dict(apis[0], queue_ms=200.0)]
        self.assertEqual(apply_cost({"slow": 100.0}, only, -0.5)["slow"], 100.0)

    def test_a_raise_that_cannot_be_placed_moves_work_off_the_expensive_api(self):
        # Another limiter (the queue guard) holds cheap at 600 of the 900 its
        # rate allows: the bottleneck is full. The raise (0.1 of 5800 = 580)
        # finds no room (cheap is over its goodput cap, dear at its cap of
        # 1.1 x 100 takes 10 req/s = 400), so the other 180 comes off dear:
        # 4.5 req/s.
        apis = [capi("cheap", 1, 2.0, offered=1000.0), capi("dear", 1, 40.0, offered=200.0)]
        apis[0]["goodput_rps"], apis[1]["goodput_rps"] = 600.0, 100.0
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, 0.1)
        self.assertEqual(out["cheap"], 900.0)
        self.assertAlmostEqual(out["dear"], 110.0 - 4.5)
        # nothing moves when no API is held back
        apis[0]["goodput_rps"] = 890.0
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, 0.1)
        self.assertAlmostEqual(out["dear"], 110.0)
        # a more important API gives too: cost comes first ...
        apis[0]["goodput_rps"], apis[0]["priority"] = 600.0, 2
        out = apply_cost({"cheap": 900.0, "dear": 100.0}, apis, 0.1)
        self.assertAlmostEqual(out["dear"], 110.0 - 4.5)
        # ... but not under cost-strict
        out = apply_cost_strict({"cheap": 900.0, "dear": 100.0}, apis, 0.1)
        self.assertAlmostEqual(out["dear"], 110.0)
