from promptseg.cli import main

raise SystemExit(main())
