"""The paper's analyses (`simgr compare`): Table 3/1/4 and Figure 4/3 analogues, cached runs, report."""
