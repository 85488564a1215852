"""One file per dashboard page; each is widgets -> one analysis call -> one plots.py figure -> st.plotly_chart."""
