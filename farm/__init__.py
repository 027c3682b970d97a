"""On-device test farms: device adapters, a Ray-scheduled farm, and result files.

`devices` runs one bundle on one device (host, QEMU, ssh, serial) without a farm;
`cluster` joins device hosts to a Ray cluster and runs bundles on them; `results` keeps
the append-only results file and `report` writes the summary, JUnit XML and HTML report.
Ray, paramiko and pyserial come with ``pip install 'edgec[farm]'`` and load lazily.
"""
