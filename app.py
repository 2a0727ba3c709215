"""Pruning Explorer: `streamlit run app.py`.

Only pages that do their whole job are listed; each page is a thin file in pages/
over the UI-free core in explorer_core/. Sections group the pages by the question
they answer; a new page adds one `st.Page` line to its section.
"""
import streamlit as st

st.set_page_config(page_title="Pruning Explorer", page_icon="✂️", layout="wide")

PAGES = {
    "Plan and prune": [
        st.Page("pages/retention.py", title="Retention curve", icon=":material/show_chart:",
                url_path="retention", default=True),
        st.Page("pages/iterative.py", title="Iterative pruning", icon=":material/cut:",
                url_path="iterative"),
    ],
    "Compare": [
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:",
                url_path="compare"),
        st.Page("pages/train_time.py", title="Train-time pruning", icon=":material/timeline:",
                url_path="train_time"),
    ],
    "Inspect": [st.Page("pages/inspect.py", title="Inspect", icon=":material/visibility:",
                        url_path="inspect")],
}

st.navigation(PAGES).run()
