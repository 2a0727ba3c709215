"""Pruning Explorer: `streamlit run app.py`.

Only pages that do their whole job are listed; each page is a thin file in pages/
over the UI-free core in explorer_core/. Sections group the pages by the question
they answer; a new page adds one `st.Page` line to its section.
"""
import streamlit as st

st.set_page_config(page_title="Pruning Explorer", page_icon="✂️", layout="wide")

RETENTION = st.Page("pages/retention.py", title="Retention curve", icon=":material/show_chart:",
                    url_path="retention")


def _start() -> None:
    """The root URL `/`: go on to the Retention curve page, which the app opens with.

    Streamlit serves its default page at `/` only and does not know the default's
    url_path: with Retention as the default, a link or bookmark to /retention opened
    the "Page not found" dialog over the page. This hidden start page owns `/`, so
    /retention is an ordinary page like /compare, and both addresses open cleanly.
    """
    st.switch_page(RETENTION)


PAGES = {
    "Plan and prune": [
        st.Page(_start, title="Pruning Explorer", url_path="start", default=True,
                visibility="hidden"),
        RETENTION,
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
