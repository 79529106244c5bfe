"""Work that spans contexts, above them: a context never imports another context's models, and
none imports ``oms.flows``; routers, the worker and the CLI call flows where one request's work
crosses contexts (cash collected at delivery, a return's receipt restocking and refunding, a
connector's order intake with its payment)."""
