from nextworld.cli import main

raise SystemExit(main())
