"""Template mining: lines of one logging statement share a template, other statements stay apart."""

from __future__ import annotations

import random

import pytest

from policyctl.cluster.templates import TemplateMiner, mask


def mine(lines: list[str]) -> tuple[TemplateMiner, list[int]]:
    """Mine ``lines``; each line's template id as it stands after the last line."""
    miner = TemplateMiner()
    ids = [miner.add(line) for line in lines]
    return miner, [miner.resolve(i) for i in ids]


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("took 812 ms", "took <*>"),
        ("writing q3.parquet failed: -17", "writing <*> failed: <*>"),
        ("lock 0x7f3a9c held", "lock <*> held"),
        ("blk_-6952295868487656571 terminating", "<*> terminating"),
        ("agent 0673dd71-34c5-4fbb-86c4-40623fbe45b4 joined", "agent <*> joined"),
        ("connect to 10.0.0.12:8080 refused", "connect to <*> refused"),
        ("listening on [fe80::1ff:fe23:4567:890a]", "listening on [<*>]"),
        ("peer FF:F2:9F:16:E5:DC lost", "peer <*> lost"),
        ("open /var/lib/agent/state.db", "open <*>"),
        (r"open C:\Windows\System32\config\SOFTWARE now", "open <*> now"),
        ("GET http://gw.local/v1/decide?x=1 done", "GET <*> done"),
        ("at Sun Jul  3 10:05:25 2005 reboot", "at <*> reboot"),
        ("at 2026-03-30T12:00:00Z reboot", "at <*> reboot"),
        ("cannot read 'q3.parquet'", "cannot read '<*>'"),
        ("cannot read 'notes.txt'", "cannot read 'notes.txt'"),  # a quoted word is text until it varies
        ('tag="View Lock", held', 'tag="<*>", held'),
        ("enabled=true cached=null", "enabled=<*> cached=<*>"),
        ("sent 1190 bytes (1.16 KB) in 3 s", "sent <*> in <*>"),
        ("uptime 3600 s (1 hours)", "uptime <*>"),
        ("Killed process 27154 (ld-linux.so.2).", "Killed process <*> (<*>)."),
        ("Killed process 28473 (httpd).", "Killed process <*> (httpd)."),
        ("memory range 0x100000 - 0x1f7f0000 (usable)", "memory range <*> (usable)"),
        ("IRQs 3 4 5 6 7 10 11 12 free", "IRQs <*> free"),
        ("connection from () at noon", "connection from (<*>) at noon"),
        ("  spaced\tout   line ", "spaced out line"),
    ],
)
def test_mask_replaces_each_kind_of_value(line: str, masked: str) -> None:
    assert mask(line) == masked


def test_mask_keeps_the_words_of_the_statement() -> None:
    line = 'deny "GET /v1/decide HTTP/1.1": Started Paused RUNNING'
    assert mask(line) == 'deny "GET <*>": Started Paused RUNNING'


@pytest.mark.parametrize(
    "lines",
    [
        [f"PacketResponder {i} for block blk_{i * 7919} terminating" for i in range(5)],
        [f"connect to 10.0.{i}.{i + 1}:{8000 + i} refused after {i}.5 s" for i in range(5)],
        [f"open /srv/data/{name}/part-{i}.parquet: permission denied" for i, name in enumerate("abcde")],
        [f"lock 0x{i * 40503:08x} held by worker {i}" for i in range(5)],
        [f"agent {u} joined" for u in ("0673dd71-34c5-4fbb-86c4-40623fbe45b4",
                                       "b9000564-fe1a-409b-b8cc-1e88b294cd1d",
                                       "96abccce-8d1f-4e07-b6d1-4b2ab87e23b4")],
        [f"cannot read '{name}': no such file" for name in ("notes.txt", "q3.parquet", "README")],
        [f"session opened for user {user} by (uid={i})" for i, user in enumerate(["root", "alice", "bob", "carol"])],
        ["synchronized to 10.100.20.250, stratum 3", "synchronized to LOCAL(0), stratum 10",
         "synchronized to 10.100.16.250, stratum 2"],
        ["proxy.example.org:5070 close, 0 bytes sent, 0 bytes received, lifetime 00:01",
         "10.1.2.3:80 close, 1190 bytes (1.16 KB) sent, 1671 bytes (1.63 KB) received, lifetime <1 sec"],
    ],
    ids=["numbers", "ip-port", "paths", "hex", "uuids", "quoted", "user-names", "value-shapes", "units"],
)
def test_lines_of_one_statement_share_a_template(lines: list[str]) -> None:
    miner, ids = mine(lines)
    assert len(set(ids)) == 1
    template = miner.template_of(ids[0])
    assert "<*>" in template.text
    assert template.count == len(lines)


@pytest.mark.parametrize(
    "lines",
    [
        ["Starting TrustedInstaller initialization.", "Ending TrustedInstaller initialization."],
        ["Link up on eth0", "Link down on eth0"],
        [f'10.11.10.1 "{method} /v2/servers/{i} HTTP/1.1" status: 200 len: {i}'
         for i in range(3) for method in ("GET", "POST", "DELETE")],
        [f"[instance: {i:08x}-fe1a-409b-b8cc-1e88b294cd1d] VM {state} (Lifecycle Event)"
         for i in range(3) for state in ("Started", "Paused", "Resumed", "Stopped")],
        ["Failed password for root from 5.36.59.76 port 42393 ssh2",
         "Failed password for invalid user admin from 5.188.10.180 port 60682 ssh2"],
        ["cupsd startup succeeded", "syslogd startup succeeded", "klogd startup succeeded"],
    ],
    ids=["verbs", "two-states", "http-methods", "lifecycle-states", "optional-words", "first-word"],
)
def test_different_statements_stay_apart(lines: list[str]) -> None:
    _, ids = mine(lines)
    distinct_lines = {mask(line) for line in lines}
    assert len(set(ids)) == len(distinct_lines)


def test_template_text_shows_where_the_values_were() -> None:
    miner, ids = mine([f"smb2: STATUS_INVALID_PARAMETER writing q{i}.parquet for agent etl-{i}" for i in range(3)])
    assert miner.template_of(ids[0]).text == "<*>: STATUS_INVALID_PARAMETER writing <*> for agent <*>"


def test_the_same_line_gets_the_same_id_while_others_stream_past() -> None:
    miner = TemplateMiner()
    first = miner.add("worker 7 finished job 12 in 30 ms")
    for i in range(200):
        miner.add(f"worker {i} started job {i * 3}")
        miner.add(f"queue depth {i}")
        assert miner.add("worker 7 finished job 12 in 30 ms") == first
    assert miner.add("worker 9 finished job 99 in 1 ms") == first


def test_an_id_merged_into_another_resolves_to_it() -> None:
    miner = TemplateMiner()
    alice = miner.add("session closed for user alice")
    bob = miner.add("session closed for user bob")
    assert alice != bob  # two values: not yet a variable
    carol = miner.add("session closed for user carol")
    assert miner.resolve(alice) == miner.resolve(bob) == carol == alice  # the oldest id stays
    assert miner.add("session closed for user bob") == alice
    template = miner.template_of(bob)
    assert (template.id, template.text, template.count) == (alice, "session closed for user <*>", 4)
    assert len(miner) == 1


def test_templates_count_every_line_and_keep_a_few_real_examples() -> None:
    lines = [f"job {i} done in {i % 5} s" for i in range(50)] + [f"disk {d} full" for d in ("sda", "sdb", "sdc")]
    miner, _ = mine(lines)
    templates = miner.templates()
    assert [(t.text, t.count) for t in templates] == [("job <*> done in <*>", 50), ("disk <*> full", 3)]
    for template in templates:
        assert 1 <= len(template.examples) <= 3
        assert set(template.examples) <= set(lines)


def test_mining_is_unchanged_when_the_caches_are_emptied() -> None:
    lines = [f"request {i:x} from user{i % 4}: status={i % 3} after {i} ms" for i in range(500)]
    small, big = TemplateMiner(max_cached=8), TemplateMiner()
    assert [small.add(line) for line in lines] == [big.add(line) for line in lines]
    assert [(t.text, t.count) for t in small.templates()] == [(t.text, t.count) for t in big.templates()]


def test_unknown_template_id_is_a_key_error() -> None:
    miner = TemplateMiner()
    miner.add("hello")
    with pytest.raises(KeyError):
        miner.template_of(5)


@pytest.mark.parametrize(
    "line",
    [
        "",
        " \t ",
        "x" * (1 << 20),
        "1:" * (1 << 19),
        "ab:" * 350_000,
        '="' * (1 << 19),
        "Jan 1 " * 170_000,
        "\x00\x01\x02\xff\ufffd",
        bytes(random.Random(7).getrandbits(8) for _ in range(1 << 16)).decode("latin-1"),
        bytes(random.Random(8).getrandbits(8) for _ in range(1 << 16)).decode("utf-8", "surrogateescape"),
    ],
    ids=["empty", "blank", "1MB", "1MB-colons", "hex-colons", "quotes", "dates", "control", "latin-1", "surrogates"],
)
def test_hostile_lines_are_mined_like_any_other(line: str) -> None:
    miner = TemplateMiner()
    tid = miner.add(line)
    assert miner.add(line) == tid
    assert miner.add("an ordinary line 42") != tid
    template = miner.template_of(tid)
    assert template.count >= 2
    assert all(len(example) <= 2000 for example in template.examples)


@pytest.mark.parametrize("first", [0, 1])
def test_a_number_and_its_name_in_parentheses_are_one_statement_whatever_the_name(first: int) -> None:
    # Issue 17: the name with a digit was masked into the number, the plain one was not, and the
    # statement split in two.
    lines = ["Out of Memory: Killed process 27154 (ld-linux.so.2).", "Out of Memory: Killed process 28473 (httpd)."]
    miner, ids = mine([lines[first], lines[1 - first], "Out of Memory: Killed process 1 (init)."])
    assert len(set(ids)) == 1
    assert miner.template_of(ids[0]).text == "Out of Memory: Killed process <*> (<*>)."


def test_a_quantity_printed_with_and_without_its_conversion_is_one_statement() -> None:
    lines = ["close, 0 bytes sent, 0 bytes received", "close, 1190 bytes (1.16 KB) sent, 0 bytes received",
             "close, 403 bytes sent, 18846 bytes (18.4 KB) received"]
    _, ids = mine(lines)
    assert len(set(ids)) == 1


@pytest.mark.parametrize(
    "lines",
    [
        ["BIOS-e820: 0000000000000000 - 000000000009f000 (usable)",
         "BIOS-e820: 000000000009f000 - 00000000000a0000 (reserved)",
         "BIOS-e820: 0000000000100000 - 000000001f7f0000 (usable)"],
        ["Location icon should now be in state 'Active'", "Location icon should now be in state 'Inactive'"],
    ],
    ids=["parenthesised-type", "quoted-state"],
)
def test_a_word_that_takes_two_values_is_not_masked_by_its_looks(lines: list[str]) -> None:
    _, ids = mine(lines)
    assert len(set(ids)) == 2


def test_a_slot_of_many_different_constants_is_a_variable() -> None:
    codes = [f"E_{name}" for name in ["ACCESS", "AGAIN", "BADF", "BUSY", "CHILD", "DOM", "EXIST", "FAULT", "FBIG",
                                      "INTR", "INVAL", "IO", "ISDIR", "MFILE", "MLINK", "NFILE", "NODEV"]]
    few, _ = mine([f"write failed: {code} on volume" for code in codes[:4]])
    many, ids = mine([f"write failed: {code} on volume" for code in codes])
    assert len(few) == 4  # a few constants are a few outcomes (GET, POST, DELETE)
    assert len(set(ids)) == 1  # sixteen and more are a value printed as a name
    assert many.template_of(ids[0]).text == "write failed: <*> on volume"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lines_whose_values_vary_together_join_one_template_whatever_their_order(seed: int) -> None:
    # Two word values in every line: an early line differs from every other one in two places,
    # so it became a form of its own; once the statement is generalised it must join it.
    rng = random.Random(seed)
    users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    hosts = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    services = ["nginx", "redis", "postgres", "kafka", "consul", "vault"]
    lines = []
    for _ in range(1500):
        user, host, service = rng.choice(users), rng.choice(hosts), rng.choice(services)
        lines.append(rng.choice([f"service {service} on node {host} restarted by {user}",
                                 f"user {user} changed role to admin on {host}",
                                 f"Accepted password for {user} from {host} port {rng.randrange(1, 65535)} ssh2"]))
    miner, ids = mine(lines)
    assert sorted(miner.template_of(i).text for i in set(ids)) == [
        "Accepted password for <*> from <*> port <*>",  # "51234 ssh2": a run of values
        "service <*> on node <*> restarted by <*>",
        "user <*> changed role to admin on <*>",
    ]
    assert sum(t.count for t in miner.templates()) == len(lines)


def test_a_value_printed_longer_in_some_lines_is_one_statement_in_any_order() -> None:
    # host:port where the host has no digit keeps the host; an address is one value: once a line
    # shows the slot takes either, every form of it joins, whichever lines came first
    import itertools

    tail = " error : Could not connect through proxy proxy.example.org:5070 - Proxy server cannot establish a connection"
    lines = [f"{lead}{tail}" for lead in ("mtalk.google.com:5228", "qd-update.qq.com:443", "10.2.3.4:80",
                                          "config.pinyin.sogou.com:80")]
    for order in itertools.permutations(lines):
        miner, ids = mine(list(order))
        assert len(set(ids)) == 1, (order, [miner.template_of(i).text for i in set(ids)])


def test_words_that_vary_together_are_variables_even_when_no_two_lines_differ_in_one() -> None:
    # a user, a host and a service in every line, from a thousand of each: two lines almost never
    # differ in one word alone, so one slot at a time would never see three values
    rng = random.Random(7)
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(1000)]
    lines = [f"service {rng.choice(names)} on node {rng.choice(names)} restarted by {rng.choice(names)}"
             for _ in range(1500)]
    lines += [f"Link {state} on {rng.choice(names)}" for state in ("up", "down") for _ in range(5)]
    miner, ids = mine(lines)
    texts = sorted(miner.template_of(i).text for i in set(ids))
    assert texts == ["Link down on <*>", "Link up on <*>", "service <*> on node <*> restarted by <*>"]


def test_constants_and_verbs_do_not_vary_together() -> None:
    lines = [f"request {method} {verb} from {where}" for method in ("GET", "POST", "PUT")
             for verb in ("served", "cached", "rejected") for where in ("alpha", "bravo", "charlie")]
    miner, ids = mine(lines)
    # the place is a value; the method and what happened are the statement
    assert len(set(ids)) == 9
    assert all(miner.template_of(i).text.endswith("from <*>") for i in set(ids))
