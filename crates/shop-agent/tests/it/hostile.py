"""A hostile third party with Python's standard xmlrpc.client.

Usage: hostile.py PHASE BASE_URL OFFICE_PASSWORD
  policy: configure policies naming system and sync tables.
  cursor: read the shop's changes twice, then forge a cursor far ahead of the last one and try it with diff
          and confirm.
Prints one JSON object: the fault code each attempt got (0 if accepted), what it saw, and whether the agent
still answers.
"""
import json
import sys
import xmlrpc.client

phase, base, office_pw = sys.argv[1:4]
host = base.split("://", 1)[1]
office = xmlrpc.client.ServerProxy(f"http://office:{office_pw}@{host}/RPC2", allow_none=True)
out = {}

if phase == "policy":
    retail = {
        "branch": "hostile",
        "from_source": ["public.product", "public.service"],
        "from_target": ["public.sale", "public.sale_item", "public.payment"],
        "both": ["public.person"],
        "initial": ["public.parameter"],
        "id_range": "1000000000000",
    }
    attempts = {
        "pg_authid_from_source": ("from_source", "pg_catalog.pg_authid"),
        "pg_class_initial": ("initial", "pg_catalog.pg_class"),
        "change_log_from_source": ("from_source", "branchsync.change_log"),
        "change_log_from_target": ("from_target", "branchsync.change_log"),
        "shop_policy_both": ("both", "branchsync.shop_policy"),
        "information_schema": ("initial", "information_schema.tables"),
        "toast": ("from_source", "pg_toast.pg_toast_1255"),
    }
    for name, (member, table) in attempts.items():
        policy = dict(retail)
        policy[member] = retail[member] + [table]
        try:
            office.configure(policy)
            out[name] = 0
        except xmlrpc.client.Fault as f:
            out[name] = f.faultCode
    out["still_up"] = office.status()["database_ok"]

elif phase == "cursor":
    def read_all(since):
        while True:
            answer = office.diff(since)
            since = answer["cursor"]
            if not answer["more"]:
                return since

    def fault_of(call):
        try:
            call()
            return 0
        except xmlrpc.client.Fault as f:
            return f.faultCode

    out["first"] = read_all("")
    out["second"] = read_all(out["first"])
    identity, snapshot = out["second"].rsplit("/", 1)
    forged = identity + "/4000000000:4000000000:"
    out["forged_diff"] = fault_of(lambda: office.diff(forged))
    out["forged_confirm"] = fault_of(lambda: office.confirm(forged))
    # Any snapshot the shop never issued, even one that looks plausible, is refused the same way.
    xmin = int(snapshot.split(":")[0])
    out["unissued_confirm"] = fault_of(lambda: office.confirm(f"{identity}/{xmin + 1}:{xmin + 1}:"))
    out["pending"] = office.status()["pending_changes"]
    out["still_up"] = office.status()["database_ok"]

print(json.dumps(out))
