#!/usr/bin/env python3
"""A second implementation of egard's stored formats, from FORMAT.md alone.

Opens an egard SQLite store with the master key and checks, without egard's code:
the vault secrets and every data key unwrap; every sealed field, and the declared
choices sealed with each consent record, opens and is JSON;
the whole audit chain verifies (with the actor tail of schema 6); every purpose, lookup, consent, objection and
customer state MAC is what FORMAT.md says; every customer's state is the one the
latest audit event recorded; every lookup token is the HMAC of the normalised value.

    EGARD_MASTER_KEY=<64 hex digits> python3 tools/verify_store.py STORE.db [NAMESPACE [SEGMENT...]]

After an archival, it checks the audit base and the kept rows and walks the chain from the
base; segment files given after the namespace are verified too, and must join each other
and end at the base (FORMAT.md 7.1).

Needs the `cryptography` package. CI runs it on the demo store (`.ci/run`), so that
FORMAT.md stays true. Exit code 0 when everything verifies; an assertion names what
does not.
"""
import hashlib
import hmac
import json
import os
import sqlite3
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER = bytes.fromhex(os.environ["EGARD_MASTER_KEY"])
MASTER_ID = int(os.environ.get("EGARD_MASTER_KEY_ID", "1"))
DB = sqlite3.connect(sys.argv[1])
NS = (sys.argv[2] if len(sys.argv) > 2 else "egard").encode()


def lp32(b):
    return struct.pack(">I", len(b)) + b


def lp16(b):
    return struct.pack(">H", len(b)) + b


def txt(s):
    return lp32(s.encode())


def t(us):
    return struct.pack(">q", us)


def opt(v, f):
    return b"\0" if v is None else b"\1" + f(v)


def unwrap(wrapped, parts):
    """A wrapped key or secret: 01 01 | u32 kek id | nonce | key | tag (FORMAT.md)."""
    assert wrapped[0:2] == b"\x01\x01", "wrapped-key header"
    assert struct.unpack(">I", wrapped[2:6])[0] == MASTER_ID, "wrapped under another master key id"
    aad = wrapped[:6] + b"".join(lp32(p) for p in parts)
    return AESGCM(MASTER).decrypt(wrapped[6:18], wrapped[18:], aad)


ROWS = dict(DB.execute("SELECT name, wrapped FROM vault_secrets"))
# After an archival (FORMAT.md 7.1): the audit base, in clear, and one marker per archival.
BASE = ROWS.pop("audit_base", None)
MARKERS = [n for n in ROWS if n.startswith("audit_archival_from_")]
for n in MARKERS:
    ROWS.pop(n)
secrets = {name: unwrap(w, [NS, b"vault-secret", name.encode()]) for name, w in ROWS.items()}
assert sorted(secrets) == ["audit", "records"], sorted(secrets)

keys = {}
for customer, version, w in DB.execute("SELECT customer, version, wrapped FROM data_keys"):
    keys[(customer, version)] = unwrap(w, [NS, customer, b"dek", struct.pack(">I", version)])


def open_field(customer, field, envelope, version):
    """A field envelope: 02 01 | u32 data-key version | nonce | ciphertext | tag."""
    assert envelope[0:2] == b"\x02\x01", "field envelope header"
    dek_version = struct.unpack(">I", envelope[2:6])[0]
    aad = envelope[:6] + lp32(NS) + lp32(customer) + lp32(field.encode()) + lp32(struct.pack(">Q", version))
    return AESGCM(keys[(customer, dek_version)]).decrypt(envelope[6:18], envelope[18:], aad)


fields = 0
for customer, field, envelope, version in DB.execute("SELECT customer, field, envelope, version FROM fields"):
    json.loads(open_field(customer, field, envelope, version))
    fields += 1

# The audit chain. Schema 6 adds the actor: when an event names one, its id is a last part
# (the actor tail); events without one (all those written before schema 6) have no tail.
HAS_ACTOR = "actor" in [row[1] for row in DB.execute("PRAGMA table_info(audit)")]
ACTOR_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/-")


def event_input(prev, seq, at, kind, customer, purpose, field, detail, state, actor):
    """The MAC input of an event (FORMAT.md 7), after `prev`."""
    m = prev + struct.pack(">Q", seq) + struct.pack(">q", at)
    for part in [kind.encode(), customer or b"", (purpose or "").encode(), (field or "").encode(), detail.encode(), state or b""]:
        m += lp16(part)
    if actor is not None:
        a = actor.encode()
        assert 1 <= len(a) <= 64 and set(a) <= ACTOR_CHARS, f"audit event {seq}: not an actor id"
        m += lp16(a)
    return m


def audit_mac(prev, *row):
    return hmac.new(secrets["audit"], event_input(prev, *row), hashlib.sha256).digest()


def micros(text):
    """An RFC 3339 time as chrono writes it (Z, 0/3/6 fraction digits) to microseconds."""
    import datetime

    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    delta = d - epoch
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


ROWS_SQL = (
    "SELECT seq, at, kind, customer, purpose, field, detail, mac, state, "
    + ("actor" if HAS_ACTOR else "NULL")
    + " FROM audit"
)
prev, count, actors, kept = b"\0" * 32, 0, 0, 0
if BASE is not None:
    # FORMAT.md 7.1: the base's MAC, the kept rows against its digest, then the chain from it.
    base = json.loads(BASE)
    anchor_seq, anchor_mac = base["anchor"]["seq"], bytes.fromhex(base["anchor"]["mac"])
    m = b"egard/audit-base/v1\0" + lp32(NS) + struct.pack(">I", base["version"]) + struct.pack(">Q", anchor_seq)
    m += anchor_mac + struct.pack(">q", micros(base["at"])) + struct.pack(">Q", base["kept"])
    m += bytes.fromhex(base["kept_digest"])
    assert hmac.new(secrets["audit"], m, hashlib.sha256).digest() == bytes.fromhex(base["mac"]), "audit base MAC"
    digest = hashlib.sha256(b"egard/audit-kept/v1\0")
    last = None
    for seq, at, kind, customer, purpose, field, detail, mac, state, actor in DB.execute(
        ROWS_SQL + " WHERE seq <= ? ORDER BY seq", (anchor_seq,)
    ):
        content = audit_mac(b"\0" * 32, seq, at, kind, customer, purpose, field, detail, state, actor)
        digest.update(struct.pack(">Q", seq) + mac + content)
        kept += 1
        last = (seq, mac)
    assert kept == base["kept"], "kept rows: count"
    assert digest.digest() == bytes.fromhex(base["kept_digest"]), "kept rows: digest"
    assert last == (anchor_seq, anchor_mac), "the base event"
    prev, count = anchor_mac, anchor_seq
for seq, at, kind, customer, purpose, field, detail, mac, state, actor in DB.execute(
    ROWS_SQL + " WHERE seq > ? ORDER BY seq", (count,)
):
    count += 1
    assert seq == count, f"audit gap at {seq}"
    actors += actor is not None
    assert audit_mac(prev, seq, at, kind, customer, purpose, field, detail, state, actor) == mac, f"audit event {seq}"
    prev = mac
    if kind == "audit_archived":
        # An archival through N left a base at or above N (FORMAT.md 7.1): without one, the
        # base was deleted and the pruned rows perhaps written back.
        through = int(detail.split(";")[0].split("-")[1])
        assert BASE is not None and anchor_seq >= through, f"audit event {seq}: archived through {through}, no base there"


def verify_segment(path):
    """A segment file (FORMAT.md 7.1): header, chained events, trailer. Returns (start, end)."""
    import uuid

    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "", f"{path}: the last line ends with a newline"
    header = json.loads(lines[0])
    assert header["format"] == "egard-audit-segment" and header["version"] == 1, f"{path}: format"
    assert header["namespace"].encode() == NS, f"{path}: namespace"
    start = (header["start"]["seq"], bytes.fromhex(header["start"]["mac"]))
    m = b"egard/audit-segment-header/v1\0" + lp32(header["format"].encode()) + struct.pack(">I", header["version"])
    m += lp32(NS) + struct.pack(">q", micros(header["created_at"])) + struct.pack(">Q", start[0]) + start[1]
    header_mac = hmac.new(secrets["audit"], m, hashlib.sha256).digest()
    assert header_mac == bytes.fromhex(header["header_mac"]), f"{path}: header MAC"
    seq, mac = start
    members = {"seq", "at", "kind", "customer", "purpose", "field", "detail", "state", "actor", "mac"}
    for line in lines[1:-2]:
        e = json.loads(line)
        assert e["seq"] == seq + 1, f"{path}: gap at {seq + 1}"
        # Nothing the MACs do not cover: no other member, no time below the microsecond.
        assert set(e) <= members, f"{path}: event {e['seq']}: unknown members"
        assert len(e["at"].rstrip("Z").partition(".")[2]) <= 6, f"{path}: event {e['seq']}: time below the microsecond"
        row = (
            e["seq"],
            micros(e["at"]),
            e["kind"],
            uuid.UUID(e["customer"]).bytes if e.get("customer") else None,
            e.get("purpose"),
            e.get("field"),
            e["detail"],
            bytes.fromhex(e["state"]) if e.get("state") else None,
            e.get("actor"),
        )
        assert audit_mac(mac, *row) == bytes.fromhex(e["mac"]), f"{path}: event {e['seq']}"
        seq, mac = e["seq"], bytes.fromhex(e["mac"])
    trailer = json.loads(lines[-2])["trailer"]
    end = (trailer["end"]["seq"], bytes.fromhex(trailer["end"]["mac"]))
    m = b"egard/audit-segment-trailer/v1\0" + header_mac + struct.pack(">Q", end[0]) + end[1]
    m += struct.pack(">Q", trailer["events"])
    assert hmac.new(secrets["audit"], m, hashlib.sha256).digest() == bytes.fromhex(trailer["segment_mac"]), f"{path}: trailer MAC"
    assert end == (seq, mac) and trailer["events"] == seq - start[0], f"{path}: end"
    return start, end


segments = 0
joined = None
for path in sys.argv[3:]:
    start, end = verify_segment(path)
    assert joined is None or joined == start, f"{path} does not start where the previous segment ended"
    joined = end
    segments += 1
if joined is not None:
    assert BASE is not None and joined == (anchor_seq, anchor_mac), "the last segment does not end at the audit base"


def record_mac(label, body):
    return hmac.new(secrets["records"], lp32(label.encode()) + lp32(NS) + body, hashlib.sha256).digest()


for pid, definition, rev, mac in DB.execute("SELECT id, definition, rev, mac FROM purposes"):
    d = json.loads(definition)
    m = txt(pid) + struct.pack(">Q", rev) + txt(d["description"]) + txt(d["basis"])
    m += struct.pack(">I", len(d["fields"])) + b"".join(txt(f) for f in d["fields"])
    m += struct.pack(">I", d["notice_version"])
    m += opt(d["consent_lifetime"], lambda s: struct.pack(">q", s)) + opt(d["retention"], lambda s: struct.pack(">q", s))
    m += bytes([d["special_category"], d["direct_marketing"]])
    # Appended only when the purpose sells or shares data or declares choices.
    choices = d.get("choices", [])
    if d.get("sells_or_shares", False) or choices:
        m += bytes([d.get("sells_or_shares", False)]) + struct.pack(">I", len(choices))
        for c in choices:
            m += txt(c["name"]) + bytes([c.get("single", False)]) + struct.pack(">I", len(c["options"]))
            m += b"".join(txt(o) for o in c["options"])
    assert record_mac("egard/purpose/v1", m) == mac, f"purpose {pid}"

lookups = DB.execute("SELECT field, normalizer, mac FROM lookups").fetchall()
for field, normalizer, mac in lookups:
    assert record_mac("egard/lookup/v1", txt(field) + txt(normalizer)) == mac, f"lookup {field}"

def open_choices(customer, consent, sealed):
    """Sealed choices: a field envelope whose AAD names "egard/choices" and the consent id."""
    assert sealed[0:2] == b"\x02\x01", "choices envelope header"
    dek_version = struct.unpack(">I", sealed[2:6])[0]
    aad = sealed[:6] + lp32(NS) + lp32(customer) + lp32(b"egard/choices") + lp32(consent)
    return AESGCM(keys[(customer, dek_version)]).decrypt(sealed[6:18], sealed[18:], aad)


consent_macs, objection_macs = {}, {}
choices_opened = 0
for cid, customer, purpose, basis, nv, given, expires, withdrawn, superseded, evidence, mac, sealed in DB.execute(
    "SELECT id, customer, purpose, basis, notice_version, given_at, expires_at, withdrawn_at, superseded_by, evidence, mac, "
    "choices FROM consents"
):
    ev = json.loads(evidence)
    m = customer + cid + txt(purpose) + txt(basis) + struct.pack(">I", nv) + t(given) + opt(expires, t) + opt(withdrawn, t)
    m += opt(superseded, lambda b: b) + txt(ev["method"]) + opt(ev["source"], txt) + opt(ev["notice_sha256"], txt)
    m += bytes([ev["explicit"]])
    # Appended only when the evidence carries the GPC mark or the record holds choices.
    if ev.get("gpc", False) or sealed is not None:
        m += bytes([ev.get("gpc", False)]) + opt(sealed, lp32)
    assert record_mac("egard/consent/v1", m) == mac, f"consent {cid.hex()}"
    if sealed is not None and any(c == customer for (c, _) in keys):
        # An erased customer's choices no longer open: their keys are gone.
        chosen = json.loads(open_choices(customer, cid, sealed))
        assert isinstance(chosen, dict) and all(isinstance(v, list) for v in chosen.values()), "choices"
        choices_opened += 1
    consent_macs.setdefault(customer, []).append((cid, mac))
for customer, purpose, at, mac in DB.execute("SELECT customer, purpose, at, mac FROM objections"):
    assert record_mac("egard/objection/v1", customer + txt(purpose) + t(at)) == mac, "objection"
    objection_macs.setdefault(customer, []).append(mac)

customers = 0
for cid, created, restricted, erased, rev, mac, uses in DB.execute(
    "SELECT id, created_at, restricted, erased_at, rev, mac, key_uses FROM customers"
):
    customers += 1
    m = cid + struct.pack(">Q", rev) + t(created) + bytes([restricted]) + opt(erased, t) + struct.pack(">Q", uses)
    versions = sorted(v for (c, v) in keys if c == cid)
    m += struct.pack(">I", len(versions)) + b"".join(struct.pack(">I", v) for v in versions)
    cs = sorted(consent_macs.get(cid, []))
    m += struct.pack(">I", len(cs)) + b"".join(c_mac for _, c_mac in cs)
    os_ = sorted(objection_macs.get(cid, []))
    m += struct.pack(">I", len(os_)) + b"".join(os_)
    rows = sorted(
        DB.execute("SELECT field, version, written_at, lookup_token FROM fields WHERE customer = ?", (cid,)).fetchall(),
        key=lambda r: r[0].encode(),
    )
    m += struct.pack(">I", len(rows)) + b"".join(txt(f) + struct.pack(">Q", v) + t(w) for f, v, w, _ in rows)
    tokens = [(f, tok) for f, _, _, tok in rows if tok is not None]
    if tokens:
        m += struct.pack(">I", len(tokens)) + b"".join(txt(f) + tok for f, tok in tokens)
    assert record_mac("egard/customer/v1", m) == mac, f"customer {cid.hex()}"
    latest = DB.execute(
        "SELECT state FROM audit WHERE customer = ? AND state IS NOT NULL ORDER BY seq DESC LIMIT 1", (cid,)
    ).fetchone()
    assert latest is not None and latest[0] == mac, f"customer {cid.hex()}: state not the one the log recorded"


def normalise(normalizer, value):
    if normalizer == "email":
        return value.strip().lower()
    if normalizer == "phone":
        digits = "".join(c for c in value if c in "0123456789")
        return ("+" if value.lstrip().startswith("+") else "") + digits
    assert normalizer == "exact", normalizer
    return value


tokens = 0
for field, normalizer, _ in lookups:
    key = record_mac("egard/lookup-key/v1", txt(field) + txt(normalizer) + b"\x01")
    for customer, envelope, version, token in DB.execute(
        "SELECT customer, envelope, version, lookup_token FROM fields WHERE field = ? AND lookup_token IS NOT NULL",
        (field,),
    ):
        value = json.loads(open_field(customer, field, envelope, version))
        assert hmac.new(key, normalise(normalizer, value).encode(), hashlib.sha256).digest() == token, "token"
        tokens += 1

print(
    f"verified: 2 vault secrets, {len(keys)} data keys, {fields} fields, {count} audit events "
    f"({actors} naming an actor after the base; {kept} kept below an archived base; {segments} segments), "
    f"{customers} customers, {tokens} lookup tokens, {choices_opened} sealed choices"
)
