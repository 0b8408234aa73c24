"""Drives a shop agent with Python's standard xmlrpc.client only, as the protocol document shows.

Usage: drive.py init|pull BASE_URL OFFICE_PASSWORD MONITOR_PASSWORD
Prints one JSON object with what it saw; exits non-zero on any surprise.
"""
import gzip
import json
import sys
import xmlrpc.client

phase, base, office_pw, monitor_pw = sys.argv[1:5]
host = base.split("://", 1)[1]
office = xmlrpc.client.ServerProxy(f"http://office:{office_pw}@{host}/RPC2", allow_none=True)
monitor = xmlrpc.client.ServerProxy(f"http://monitor:{monitor_pw}@{host}/RPC2", allow_none=True)
out = {}

if phase == "init":
    try:
        xmlrpc.client.ServerProxy(f"http://office:wrong@{host}/RPC2").status()
        raise SystemExit("wrong password accepted")
    except xmlrpc.client.ProtocolError as e:
        out["wrong_password_status"] = e.errcode
    try:
        monitor.clean()
        raise SystemExit("monitor may clean")
    except xmlrpc.client.Fault as f:
        out["monitor_clean_fault"] = f.faultCode
    out["status_before"] = monitor.status()["database_ok"]
    office.clean()
    policy = {
        "branch": "python-shop",
        "from_source": ["public.product", "public.service"],
        "from_target": ["public.sale", "public.sale_item", "public.payment"],
        "both": ["public.person"],
        "initial": ["public.parameter"],
        "id_range": "1000000000000",
    }
    out["fingerprint"] = office.configure(policy)
    sql = (
        "-- a catalogue written by hand\n"
        "INSERT INTO product (id, code, name, price, attributes) VALUES\n"
        "  (1, 'P1', 'Caf\u00e9 cr\u00e8me', 2.50, '{\"size\": \"L\"}'),\n"
        "  (2, 'P2', 'It''s tea', 1.80, NULL)\n"
        "ON CONFLICT (id) DO UPDATE SET code = EXCLUDED.code, name = EXCLUDED.name, price = EXCLUDED.price, attributes = EXCLUDED.attributes;\n"
        "INSERT INTO person (id, name) VALUES (1, 'Ana') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;\n"
    )
    # DDL is refused, and the refusal ends its session.
    doomed = office.sql_prepare()
    try:
        office.sql_create(doomed, xmlrpc.client.Binary(gzip.compress(b"DROP TABLE sale;")))
        raise SystemExit("DDL accepted")
    except xmlrpc.client.Fault as f:
        out["ddl_fault"] = f.faultCode
    try:
        office.sql_finish(doomed)
        raise SystemExit("a refused session finished")
    except xmlrpc.client.Fault as f:
        out["ended_fault"] = f.faultCode
    sid = office.sql_prepare()
    office.sql_create(sid, xmlrpc.client.Binary(gzip.compress(sql.encode("utf-8"))))
    out["finish"] = office.sql_finish(sid)
    out["finish_again"] = office.sql_finish(sid)
    out["setidstart"] = office.setidstart("1000000000000")
elif phase == "pull":
    since, answers, statements = "", 0, 0
    while True:
        answer = office.diff(since)
        answers += 1
        text = gzip.decompress(answer["data"].data).decode("utf-8")
        statements += sum(1 for line in text.splitlines() if line.startswith(("INSERT", "DELETE", "COPY")))
        since = answer["cursor"]
        if not answer["more"]:
            break
    out.update(answers=answers, statements=statements, cursor=since)
    out["pending"] = office.status()["pending_changes"]
    # Going on from the cursor acknowledges nothing (protocol v2); confirming it does.
    again = office.diff(since)
    out["again_more"] = again["more"]
    out["pending_after_diff"] = office.status()["pending_changes"]
    office.confirm(since)
    out["pending_after_confirm"] = office.status()["pending_changes"]
print(json.dumps(out))
