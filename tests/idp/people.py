"""Who the test provider knows, and its one client (no Django imports: the site's tests read these too)."""

CLIENT_ID, CLIENT_SECRET, PASSWORD = "evaluation-site", "evaluation-site-secret", "hospital-pass-1"
# user name -> groups at the hospital
PEOPLE = {
    "dr.sso": ["clinicians", "ward-7"],
    "dr.board": ["doctors", "safety-board"],
    "prof.sso": ["research"],
    "visitor.sso": ["visitors"],
}
