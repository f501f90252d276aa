"""What the dashboard's pages show, computed without Streamlit: the leaderboard, figures, browsing, live prediction.

The pages in dashboard/ only lay these out.
"""
